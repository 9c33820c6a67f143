"""Linear and logistic regression with coded variables: prediction-powered M-estimation.

The coefficients solve a rectified estimating equation (Angelopoulos, Duchi and Zrnic 2023, PPI++):

    lam * mean_corpus psi(imputed; b) + mean_sample [psi(human; b) - lam * psi(imputed; b)] = 0

where ``psi(d; b) = x (y - m(x'b))`` is the score of least squares (m the identity) or of the logistic
likelihood, "imputed" has the coded variables (the outcome, a covariate, or both) replaced by the model's codes
(PPI, PPI++) or by cross-fitted predictions (DSL), and "human" has them as the coders gave them. It is stacked
as one weighted sum ``sum_i c_i psi_i(b)`` and solved by Newton's method. Standard errors are sandwich
estimates: the design variance of the sample term (``population="finite"``), or the variance of independent
draws (``"superpopulation"``, as in ppi-python).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FineclassError
from ._design import Design, effective_df, iid_df, total_covariance

FAMILIES = ("ols", "logistic")


def _mean(family: str, eta: np.ndarray) -> np.ndarray:
    return eta if family == "ols" else np.exp(-np.logaddexp(0.0, -eta))


def psi(family: str, X: np.ndarray, y: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The scores x_i (y_i - m(x_i'b)) of least squares or of the logistic likelihood.

    Args:
        family: ``"ols"`` or ``"logistic"``.
        X: (n, p) covariates (with the intercept).
        y: (n,) outcomes.
        beta: (p,) coefficients.

    Returns:
        (n, p) scores, one row per document.
    """
    return X * (y - _mean(family, X @ beta))[:, None]


def jacobian(family: str, X: np.ndarray, c: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The Jacobian of the weighted scores: sum_i c_i d psi_i / d b = - sum_i c_i m'(x_i'b) x_i x_i'.

    Args:
        family: ``"ols"`` or ``"logistic"``.
        X: (n, p) covariates.
        c: (n,) the weights of the documents in the estimating equation.
        beta: (p,) coefficients.

    Returns:
        (p, p) the Jacobian.
    """
    if family == "ols":
        d = c
    else:
        mu = _mean(family, X @ beta)
        d = c * mu * (1 - mu)
    return -(X * d[:, None]).T @ X


def solve(family: str, X: np.ndarray, y: np.ndarray, c: np.ndarray, beta0: np.ndarray, what: str) -> np.ndarray:
    """Root of sum_i c_i psi_i(b) by Newton's method with step halving.

    Args:
        family: ``"ols"`` or ``"logistic"``.
        X: (n, p) covariates.
        y: (n,) outcomes.
        c: (n,) the weights of the documents (negative for the subtracted imputed sample terms).
        beta0: (p,) starting values.
        what: the regression's name in errors.

    Returns:
        (p,) the coefficients.

    Raises:
        FineclassError: collinear covariates, or a logistic fit that does not converge.
    """
    beta = np.array(beta0, float)

    def g(b):
        return c @ psi(family, X, y, b)

    cur = g(beta)
    for _ in range(100):
        try:
            step = np.linalg.solve(jacobian(family, X, c, beta), -cur)
        except np.linalg.LinAlgError:
            raise FineclassError(
                f"the {what} regression cannot be solved: its covariates are collinear (or a "
                f"covariate is constant) among the documents used. Drop a covariate.",
                "covariates",
            ) from None
        t = 1.0
        while True:
            new = beta + t * step
            nxt = g(new)
            if np.linalg.norm(nxt) <= np.linalg.norm(cur) or t < 1e-6:
                break
            t /= 2
        beta, cur = new, nxt
        if np.max(np.abs(t * step)) < 1e-11 * (1 + np.max(np.abs(beta))):
            return beta
        if family == "ols":
            return beta
    raise FineclassError(
        f"the {what} regression did not converge (the logistic fit may separate the outcome "
        f"perfectly). Check the outcome's variation, or drop a covariate.",
        "regression",
    )


def _inv(H: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        raise FineclassError(
            "the regression's Hessian is singular: a covariate is constant or collinear with others. Drop a covariate.",
            "covariates",
        ) from None


def _cov1(a: np.ndarray) -> np.ndarray:
    if len(a) < 2:
        return np.zeros((a.shape[1], a.shape[1]))
    a = a - a.mean(0)
    return a.T @ a / (len(a) - 1)


@dataclass
class Problem:
    """A regression's data.

    ``X_hat, y_hat``: every document with the coded variables imputed; ``X, y``: the
    sampled documents with the human codes; ``sampled``: their rows in the corpus; ``outcome_only``: only the
    outcome is coded (then the Hessian does not depend on the codes and is averaged over the whole corpus).
    """

    family: str
    X_hat: np.ndarray
    y_hat: np.ndarray
    X: np.ndarray
    y: np.ndarray
    sampled: np.ndarray
    outcome_only: bool

    @property
    def Xs_hat(self) -> np.ndarray:
        """The imputed covariates of the sampled documents."""
        return self.X_hat[self.sampled]

    @property
    def ys_hat(self) -> np.ndarray:
        """The imputed outcomes of the sampled documents."""
        return self.y_hat[self.sampled]


@dataclass
class RegFit:
    """A fitted regression: coefficients, their covariance, the weight lambda on the codes, degrees of freedom."""

    beta: np.ndarray
    cov: np.ndarray
    lam: float
    df: np.ndarray | None = None  # degrees of freedom per coefficient (None: normal intervals)


def model_only(pr: Problem, start: np.ndarray | None = None) -> RegFit:
    """The regression on every document with the model's codes taken as the truth (iid sandwich).

    Args:
        pr: the regression's data.
        start: starting values (default: zeros).

    Returns:
        The coefficients, their covariance, lambda and degrees of freedom.
    """
    N = len(pr.y_hat)
    c = np.full(N, 1.0 / N)
    beta = solve(
        pr.family, pr.X_hat, pr.y_hat, c, np.zeros(pr.X_hat.shape[1]) if start is None else start, "model-only"
    )
    Hi = _inv(jacobian(pr.family, pr.X_hat, c, beta))
    s = psi(pr.family, pr.X_hat, pr.y_hat, beta)
    return RegFit(beta, Hi @ (s.T @ s / N) @ Hi.T / N, 1.0)


# ------------------------------------------------------------------------------------------ finite population
def _finite_fit(pr: Problem, design: Design, lam: float, start: np.ndarray):
    N = len(pr.y_hat)
    w = design.weights
    nhat = w.sum()
    X = np.concatenate([pr.X_hat, pr.X, pr.Xs_hat])
    y = np.concatenate([pr.y_hat, pr.y, pr.ys_hat])
    c = np.concatenate([np.full(N, lam / N), w / nhat, -lam * w / nhat])
    beta = solve(pr.family, X, y, c, start, "prediction-powered")
    if pr.outcome_only and lam != 0:
        H = jacobian(pr.family, pr.X_hat, np.full(N, 1.0 / N), beta)
    else:
        H = jacobian(pr.family, X, c, beta)
    return beta, H


def _finite_scores(pr: Problem, design: Design, beta: np.ndarray):
    w = design.weights
    nhat = w.sum()
    a = psi(pr.family, pr.X, pr.y, beta)
    b = psi(pr.family, pr.Xs_hat, pr.ys_hat, beta)
    return (a - (w @ a) / nhat) / nhat, (b - (w @ b) / nhat) / nhat


def _finite_lambda(pr: Problem, design: Design, beta: np.ndarray, H: np.ndarray) -> float:
    za, zb = _finite_scores(pr, design, beta)
    p = za.shape[1]
    V = total_covariance(np.hstack([za, zb]), design)
    vab, vbb = V[:p, p:], V[p:, p:]
    Hi = _inv(H)
    den = np.trace(Hi @ vbb @ Hi.T)
    if den <= 0:
        return 0.0
    return float(np.clip(np.trace(Hi @ ((vab + vab.T) / 2) @ Hi.T) / den, 0.0, 1.0))


def finite(pr: Problem, design: Design, lam, start: np.ndarray) -> RegFit:
    """Design-based PPI / PPI++ / DSL for the corpus' own coefficients.

    Args:
        pr: the regression's data.
        design: the sample's design.
        lam: the weight on the imputed terms: a number (1 for PPI and DSL), or ``"tune"`` (PPI++).
        start: starting values.

    Returns:
        The coefficients, their covariance, lambda and degrees of freedom.
    """
    if isinstance(lam, str):
        beta, H = _finite_fit(pr, design, 1.0, start)
        for _ in range(2):  # lam at the lam = 1 fit, then once more at the tuned fit (as ppi-python's intervals)
            lam_ = _finite_lambda(pr, design, beta, H)
            beta, H = _finite_fit(pr, design, lam_, beta)
        lam = lam_
    else:
        beta, H = _finite_fit(pr, design, float(lam), start)
    za, zb = _finite_scores(pr, design, beta)
    V = total_covariance(za - lam * zb, design)
    Hi = _inv(H)
    return RegFit(beta, Hi @ V @ Hi.T, float(lam), effective_df((za - lam * zb) @ Hi.T, design))


# ------------------------------------------------------------------------------------------ superpopulation
def _outside(pr: Problem) -> np.ndarray:
    mask = np.ones(len(pr.y_hat), bool)
    mask[pr.sampled] = False
    return mask


def _super_fit(pr: Problem, lam: float, start: np.ndarray):
    out = _outside(pr)
    XU, yU = pr.X_hat[out], pr.y_hat[out]
    n, m = len(pr.y), len(yU)
    if pr.family == "ols" and pr.outcome_only:
        # ppi-python's form: least squares on the imputed outside documents plus least squares of the rectifier
        beta = np.linalg.lstsq(pr.X, pr.y - lam * pr.ys_hat, rcond=None)[0]
        if lam != 0 and m:
            beta = beta + np.linalg.lstsq(XU, lam * yU, rcond=None)[0]
    else:
        X = np.concatenate([XU, pr.X, pr.Xs_hat])
        y = np.concatenate([yU, pr.y, pr.ys_hat])
        c = np.concatenate([np.full(m, lam / m if m else 0.0), np.full(n, 1.0 / n), np.full(n, -lam / n)])
        beta = solve(pr.family, X, y, c, start, "prediction-powered")
    if pr.outcome_only:
        if lam != 0:
            H = jacobian(pr.family, np.concatenate([XU, pr.X]), np.full(m + n, 1.0 / (m + n)), beta)
        else:
            H = jacobian(pr.family, pr.X, np.full(n, 1.0 / n), beta)
    else:
        X = np.concatenate([XU, pr.X, pr.Xs_hat])
        c = np.concatenate([np.full(m, lam / m if m else 0.0), np.full(n, 1.0 / n), np.full(n, -lam / n)])
        H = jacobian(pr.family, X, c, beta)
    return beta, H


def _super_scores(pr: Problem, beta: np.ndarray):
    out = _outside(pr)
    return (
        psi(pr.family, pr.X, pr.y, beta),
        psi(pr.family, pr.Xs_hat, pr.ys_hat, beta),
        psi(pr.family, pr.X_hat[out], pr.y_hat[out], beta),
    )


def _super_lambda(pr: Problem, beta: np.ndarray, H: np.ndarray) -> float:
    g, gh, gu = _super_scores(pr, beta)
    n, m = len(g), len(gu)
    gc, ghc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ ghc + ghc.T @ gc) / n
    var = _cov1(np.concatenate([gh, gu]))
    Hi = _inv(H)
    den = 2 * (1 + (n / m if m else np.inf)) * np.trace(Hi @ var @ Hi.T)
    if not np.isfinite(den) or den <= 0:
        return 0.0
    return float(np.clip(np.trace(Hi @ cov @ Hi.T) / den, 0.0, 1.0))


def superpopulation(pr: Problem, lam, start: np.ndarray) -> RegFit:
    """PPI / PPI++ as ppi-python's ``ppi_ols_ci`` and ``ppi_logistic_ci`` compute them (simple random sample).

    Args:
        pr: the regression's data.
        lam: the weight on the imputed terms: a number, or ``"tune"`` (PPI++).
        start: starting values.

    Returns:
        The coefficients, their covariance, lambda and degrees of freedom.
    """
    if isinstance(lam, str):
        beta, H = _super_fit(pr, 1.0, start)
        for _ in range(2):
            lam_ = _super_lambda(pr, beta, H)
            beta, H = _super_fit(pr, lam_, beta)
        lam = lam_
    else:
        lam = float(lam)
        beta, H = _super_fit(pr, lam, start)
    g, gh, gu = _super_scores(pr, beta)
    n, m = len(g), len(gu)
    V = _cov1(g - lam * gh) + ((n / m) * _cov1(lam * gu) if m else 0.0)
    Hi = _inv(H)
    return RegFit(beta, Hi @ V @ Hi.T / n, lam, iid_df((g - lam * gh) @ Hi.T, (lam * gu) @ Hi.T))


def pseudo_moments(pr: Problem, weights: np.ndarray, start: np.ndarray, impute: bool = True) -> RegFit:
    """DSL (Egami et al. 2023), solved as a weighted estimating equation.

    The mean over every document of ``psi(imputed) + (R / pi) (psi(human) - psi(imputed))`` is set to zero;
    sandwich variance of independent documents. ``impute=False``: the imputed part is left out (the human sample
    alone, weighted by 1 / pi).

    Args:
        pr: the regression's data.
        weights: (n,) the design weights 1 / pi of the sampled documents.
        start: starting values.
        impute: whether the imputed part enters (False: the human sample alone).

    Returns:
        The coefficients, their covariance, lambda and degrees of freedom.
    """
    N = len(pr.y_hat)
    k = 1.0 if impute else 0.0
    X = np.concatenate([pr.X_hat, pr.X, pr.Xs_hat])
    y = np.concatenate([pr.y_hat, pr.y, pr.ys_hat])
    c = np.concatenate([np.full(N, k / N), weights / N, -k * weights / N])
    beta = solve(pr.family, X, y, c, start, "DSL")
    if pr.outcome_only and impute:
        H = jacobian(pr.family, pr.X_hat, np.full(N, 1.0 / N), beta)
    else:
        H = jacobian(pr.family, X, c, beta)
    m = k * psi(pr.family, pr.X_hat, pr.y_hat, beta)
    correction = psi(pr.family, pr.X, pr.y, beta) - k * psi(pr.family, pr.Xs_hat, pr.ys_hat, beta)
    m[pr.sampled] += weights[:, None] * correction
    Hi = _inv(H)
    return RegFit(beta, Hi @ _cov1(m) @ Hi.T / N, k, iid_df(m @ Hi.T))
