"""Label shares from model codes on every document plus human codes on a sample: the arithmetic.

Every estimator here has the prediction-powered form

    share = lam * mean_corpus(a) + mean_sample(y - lam * a)

where ``a`` is what stands in for the human code on every document - the model's code (PPI, PPI++) or a
cross-fitted prediction of the human code (DSL) - and ``lam`` is 1 (PPI, DSL), tuned to the data (PPI++;
Angelopoulos, Duchi and Zrnic 2023), or 0 (the human sample alone). With ``population="finite"`` the corpus is
the population: ``mean_corpus(a)`` is known exactly, the sample mean is the weighted (Hajek) mean under the
sampling design, and the variance is the design variance of that mean with the finite-population correction.
With ``population="superpopulation"`` the documents are themselves a sample from a larger population: PPI and
PPI++ follow Angelopoulos et al. (2023) exactly as the ``ppi-python`` package computes them (the human sample
against the documents outside it), DSL follows Egami et al. (2023) (the mean of design-based pseudo-outcomes).

Small samples: a share whose sample holds no disagreement between the model and the coders would get a
standard error of zero. ``pseudo`` adds that many pseudo-documents to each of the four cells (human code 0/1
x model code 0/1) of the variance only, in the spirit of Agresti and Caffo (2000); the estimate itself is not
changed. ``pseudo=0`` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._design import Design, total_variance

# the four cells (human code, model code) of a pseudo-document
_PSEUDO_Y = np.array([1.0, 0.0, 1.0, 0.0])
_PSEUDO_A = np.array([0.0, 1.0, 1.0, 0.0])


@dataclass
class ShareFit:
    """Estimated shares, one per label: the estimate, its variance and the weight lambda on the codes."""

    estimate: np.ndarray  # (L,)
    variance: np.ndarray  # (L,)
    lam: np.ndarray  # (L,)


def _pseudo_values(lam: np.ndarray) -> np.ndarray:
    """(4, L): y - lam * a in each cell."""
    return _PSEUDO_Y[:, None] - _PSEUDO_A[:, None] * lam[None, :]


def finite(
    Y: np.ndarray, A: np.ndarray, a_mean: np.ndarray, design: Design, domain: np.ndarray, lam, pseudo: float
) -> ShareFit:
    """Design-based estimate of the share in a domain (a group of the corpus, or all of it).

    Args:
        Y: (n, L) human codes of the sampled documents.
        A: (n, L) their stand-ins (model codes, or DSL's predictions).
        a_mean: (L,) the stand-ins' mean over the domain's documents in the corpus.
        design: the sample's design.
        domain: (n,) which sampled documents belong to the domain.
        lam: a number, an (L,) array, or ``"tune"`` (PPI++: the lam that minimises the design variance).
        pseudo: the weight of the pseudo-documents in each cell of the variance (0: none).

    Returns:
        The shares, their variances and lambda, one per label.
    """
    L = Y.shape[1]
    w = design.weights * domain
    nhat = w.sum()
    if isinstance(lam, str):
        lam = tune_finite(Y, A, design, domain)
    lam = np.broadcast_to(np.asarray(lam, float), (L,)).copy()
    e = Y - lam * A
    r = (w @ e) / nhat
    u = domain[:, None] * (e - r) / nhat
    pv = (_pseudo_values(lam) - r) / nhat
    var = total_variance(u, design, pseudo=pv, pseudo_weight=pseudo, domain=domain)
    return ShareFit(lam * a_mean + r, var, lam)


def tune_finite(Y: np.ndarray, A: np.ndarray, design: Design, domain: np.ndarray) -> np.ndarray:
    """PPI++'s lam for the finite population: cov(y, a) / var(a) under the design, clipped to [0, 1].

    Args:
        Y: (n, L) human codes of the sampled documents.
        A: (n, L) their stand-ins.
        design: the sample's design.
        domain: (n,) which sampled documents belong to the domain.

    Returns:
        (L,) lambda per label.
    """
    w = design.weights * domain
    nhat = w.sum()
    ya = domain[:, None] * (Y - (w @ Y) / nhat) / nhat
    aa = domain[:, None] * (A - (w @ A) / nhat) / nhat
    vab = total_variance(ya, design, aa)
    vbb = total_variance(aa, design)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = np.where(vbb > 1e-300, vab / np.where(vbb > 1e-300, vbb, 1.0), 0.0)
    return np.clip(lam, 0.0, 1.0)


def _var0_with_pseudo(e: np.ndarray, pv: np.ndarray, pseudo: float) -> np.ndarray:
    """Variance with divisor n (as ppi-python computes it), pseudo-documents added with weight ``pseudo``."""
    wt = len(e) + pseudo * len(pv)
    m = (e.sum(0) + pseudo * pv.sum(0)) / wt
    return (((e - m) ** 2).sum(0) + pseudo * ((pv - m) ** 2).sum(0)) / wt


def superpopulation(Y: np.ndarray, A: np.ndarray, A_out: np.ndarray, lam, pseudo: float) -> ShareFit:
    """PPI / PPI++ mean as in Angelopoulos et al. (2023) and ppi-python's ``ppi_mean_ci``.

    Args:
        Y: (n, L) human codes of the sampled documents.
        A: (n, L) their stand-ins.
        A_out: (m, L) the stand-ins of the documents outside the sample ("unlabelled").
        lam: a number, an (L,) array, or ``"tune"``.
        pseudo: the weight of the pseudo-documents in each cell of the variance (0: none).

    Returns:
        The shares, their variances and lambda, one per label.
    """
    n, m = len(Y), len(A_out)
    if isinstance(lam, str):
        yc, ac = Y - Y.mean(0), A - A.mean(0)
        cov = (yc * ac).sum(0) / n
        both = np.concatenate([A, A_out])
        var = both.var(0, ddof=1) if len(both) > 1 else np.zeros(Y.shape[1])
        ratio = n / m if m else np.inf
        with np.errstate(invalid="ignore", divide="ignore"):
            lam = np.where(var > 1e-300, cov / ((1 + ratio) * np.where(var > 1e-300, var, 1.0)), 0.0)
        lam = np.clip(np.nan_to_num(lam), 0.0, 1.0)
    lam = np.broadcast_to(np.asarray(lam, float), (Y.shape[1],)).copy()
    e = Y - lam * A
    imputed = (lam * A_out).mean(0) if m else np.zeros(Y.shape[1])
    var_imp = (lam * A_out).var(0) / m if m else np.zeros(Y.shape[1])
    var = var_imp + _var0_with_pseudo(e, _pseudo_values(lam), pseudo) / n
    return ShareFit(imputed + e.mean(0), var, lam)


def pseudo_outcomes(
    Y: np.ndarray, G_sample: np.ndarray, G_domain: np.ndarray, weights: np.ndarray, pseudo: float, lam: float = 1.0
) -> ShareFit:
    """DSL's mean of pseudo-outcomes ``g + (R / pi) (y - g)`` over the domain's documents, variance var / N.

    ``lam=0`` with predictions of zero: the human sample alone (Horvitz-Thompson).

    Args:
        Y: (n, L) human codes of the domain's sampled documents.
        G_sample: (n, L) their predictions.
        G_domain: (N_g, L) predictions for all of the domain's documents.
        weights: (n,) design weights 1 / pi of the sampled documents.
        pseudo: the weight of the pseudo-documents in each cell of the variance (0: none).
        lam: the weight of the pseudo-documents' model code (1 for DSL, 0 for the human sample alone).

    Returns:
        The shares, their variances and lambda, one per label.
    """
    N = len(G_domain)
    tot = G_domain.sum(0) + (weights[:, None] * (Y - G_sample)).sum(0)
    est = tot / N
    # the pseudo-outcomes of every document, the sampled ones corrected; their variance, divisor N - 1
    ss = ((G_domain - est) ** 2).sum(0)
    corr = weights[:, None] * (Y - G_sample)
    # sampled rows: (g + c - est)^2 - (g - est)^2 = c^2 + 2 c (g - est)
    ss = ss + (corr**2 + 2 * corr * (G_sample - est)).sum(0)
    wt = N
    if pseudo > 0 and len(weights):
        gbar, wbar = G_domain.mean(0), weights.mean()
        pv = gbar + wbar * (_PSEUDO_Y[:, None] - lam * _PSEUDO_A[:, None])
        m = (est * N + pseudo * pv.sum(0)) / (N + pseudo * 4)
        ss = ss + N * (est - m) ** 2 + pseudo * ((pv - m) ** 2).sum(0)
        wt = N + pseudo * 4
    var = ss / max(wt - 1, 1) / N
    return ShareFit(est, var, np.full(Y.shape[1], float(lam)))


def model_only(F_domain: np.ndarray) -> ShareFit:
    """The naive share: model codes taken as the truth, with the iid interval of N codes.

    Args:
        F_domain: (N_g, L) the model's 0/1 codes of the domain's documents.

    Returns:
        The shares, their variances and lambda, one per label.
    """
    N = len(F_domain)
    return ShareFit(F_domain.mean(0), F_domain.var(0) / max(N, 1), np.ones(F_domain.shape[1]))
