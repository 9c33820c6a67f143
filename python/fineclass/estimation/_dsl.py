"""The supervised step of design-based supervised learning (DSL; Egami, Hinck, Stewart and Wei 2023).

DSL predicts each human code from what is known for every document - the model's code, its confidence and
the other observed variables - with a model fitted on the human sample, cross-fitted: the corpus is split
into folds and the predictions for a fold come from a model fitted on the sampled documents of the other
folds, so that no document's human code helps predict itself. Any prediction keeps the estimate unbiased (the
design-based correction takes care of its errors); a better one makes the interval narrower.

The learner here is a ridge-penalised logistic regression, fitted by Newton's method for all labels at once.
"""

from __future__ import annotations

import numpy as np

from ..errors import FineclassError


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def fit_logistic(X: np.ndarray, y: np.ndarray, ridge: float = 1.0, iterations: int = 50) -> np.ndarray:
    """Ridge logistic regressions fitted side by side by Newton's method.

    The first column of X is the intercept and gets a weak penalty (1e-2), the others ``ridge``; the penalty
    keeps the fit finite when a fold's human codes are all 0 or all 1.

    Args:
        X: (B, n, p) features, one block per regression; the first column is the intercept.
        y: (B, n) outcomes in [0, 1].
        ridge: the penalty of the non-intercept coefficients.
        iterations: the most Newton steps.

    Returns:
        (B, p) coefficients.
    """
    B, n, p = X.shape
    pen = np.full(p, float(ridge))
    pen[0] = 1e-2
    beta = np.zeros((B, p))
    for _ in range(iterations):
        eta = np.einsum("bnp,bp->bn", X, beta)
        mu = _sigmoid(eta)
        grad = np.einsum("bnp,bn->bp", X, y - mu) - pen * beta
        W = mu * (1 - mu)
        H = np.einsum("bnp,bn,bnq->bpq", X, W, X) + np.diag(pen)[None]
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def crossfit(
    features: np.ndarray, human: np.ndarray, sampled: np.ndarray, *, folds: int, seed: int, ridge: float = 1.0
) -> np.ndarray:
    """Cross-fitted predictions of the human codes for every document.

    Args:
        features: (B, N, p) features of every document of the corpus, one block per predicted variable; the
            first column is the intercept.
        human: (n, B) the human codes (0/1) of the sampled documents.
        sampled: (n,) the corpus row of each sampled document.
        folds: number of folds (at least 2).
        seed: seeds the split of the corpus into folds.
        ridge: the ridge penalty of each fold's logistic fit (the intercept gets a weak one, 1e-2).

    Returns:
        (N, B) predictions in (0, 1).
    """
    B, N, p = features.shape
    n = len(sampled)
    if n < 2 * folds:
        raise FineclassError(
            f"DSL cross-fits over {folds} folds, which needs at least {2 * folds} human-coded "
            f"documents; the sample has {n}. Lower `folds` or code more documents.",
            "folds",
        )
    fold = np.empty(N, np.int64)
    fold[np.random.default_rng(seed).permutation(N)] = np.arange(N) % folds
    # standardise the non-intercept features on the sample, so that one ridge penalty suits every column
    Xs = features[:, sampled, :]
    mu = Xs[:, :, 1:].mean(1, keepdims=True)
    sd = Xs[:, :, 1:].std(1, keepdims=True)
    sd[sd < 1e-12] = 1.0
    Z = features.copy()
    Z[:, :, 1:] = (features[:, :, 1:] - mu) / sd
    out = np.empty((N, B))
    sample_fold = fold[sampled]
    for k in range(folds):
        train = sampled[sample_fold != k]
        beta = fit_logistic(Z[:, train, :], human[sample_fold != k].T, ridge=ridge)
        rows = np.flatnonzero(fold == k)
        out[rows] = _sigmoid(np.einsum("bnp,bp->bn", Z[:, rows, :], beta)).T
    return out


def code_features(F: np.ndarray, C: np.ndarray | None, extra: np.ndarray | None = None) -> np.ndarray:
    """Features per label: intercept, the model's code, its confidence where it gave one, and shared columns.

    Args:
        F: (N, B) the model's 0/1 codes.
        C: (N, B) their confidences (NaN where unknown), or None.
        extra: (N, q) columns shared by every label (groups, covariates), or None.

    Returns:
        (B, N, p) features.
    """
    N, B = F.shape
    cols = [np.ones((B, N)), F.T]
    if C is not None:
        known = np.isfinite(C) & (F > 0)
        fill = np.where(known, C, 0.0).sum(0) / np.maximum(known.sum(0), 1)  # mean confidence of the codes given
        cols.append((F * (np.where(known, C, fill[None, :]) - fill[None, :])).T)
    X = np.stack(cols, axis=-1)
    if extra is not None and extra.shape[1]:
        X = np.concatenate([X, np.broadcast_to(extra[None], (B,) + extra.shape)], axis=-1)
    return X
