"""The sampling design of the human sample, and design-based variances of weighted totals.

Three designs are known, each with the inclusion probability ``pi`` of every sampled document:

- ``srs``: a simple random sample without replacement of n of the N documents (pi = n / N);
- ``stratified``: a simple random sample within each stratum, pi_h = n_h / N_h (constant within a stratum);
- ``poisson``: each document drawn independently with its own pi (the uncertainty sampler's design).

The variances are those of the Horvitz-Thompson total ``sum_S w_i z_i`` (``w = 1 / pi``) under the design, with
the finite-population correction: Cochran (1977), Sampling Techniques, sections 5.3 (stratified) and 9A.6
(Poisson sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FineclassError, preview

DESIGNS = ("srs", "stratified", "poisson")


@dataclass
class Design:
    """One sampled document per row: weights ``w = 1/pi``, probabilities, stratum index, sampling fraction."""

    kind: str
    prob: np.ndarray  # (n,) inclusion probabilities
    strata: np.ndarray  # (n,) stratum index; all 0 for srs and poisson
    fraction: np.ndarray  # (H,) sampling fraction of each stratum (srs: n / N)
    names: list  # stratum names (for messages)

    @property
    def weights(self) -> np.ndarray:
        """The design weights ``1 / pi``, one per sampled document."""
        return 1.0 / self.prob

    def __len__(self) -> int:
        return len(self.prob)


def make_design(kind: str | None, prob: np.ndarray | None, strata: list | None, n: int, n_corpus: int) -> Design:
    """Check the design columns and build a :class:`Design` for ``n`` sampled documents of ``n_corpus``.

    Args:
        kind: ``"srs"``, ``"stratified"``, ``"poisson"``, or None to infer it (stratified with strata, Poisson
            with unequal probabilities, else srs).
        prob: (n,) inclusion probabilities of the sampled documents, or None.
        strata: (n,) stratum of each sampled document, or None.
        n: the number of sampled documents.
        n_corpus: the number of documents in the corpus (an srs's fraction is n / n_corpus).

    Returns:
        The checked design.

    Raises:
        FineclassError: probabilities outside (0, 1], a stratified design without strata or probabilities, a
            stratum with unequal probabilities or a single document, an srs with unequal probabilities.
    """
    if kind is not None and kind not in DESIGNS:
        raise FineclassError(f"`design` must be one of {', '.join(DESIGNS)}; got {kind!r}.", "design")
    if prob is not None:
        bad = ~np.isfinite(prob) | (prob <= 0) | (prob > 1)
        if bad.any():
            raise FineclassError(
                f"`probability` holds {int(bad.sum())} values outside (0, 1] (e.g. "
                f"{preview(prob[bad][:3].tolist())}); each is the chance that the document was "
                f"drawn into the human sample, so it must be above 0 and at most 1.",
                "probability",
            )
    if kind is None:
        if strata is not None:
            kind = "stratified"
        elif prob is not None and np.ptp(prob) > 1e-12 * prob.max():
            kind = "poisson"
        else:
            kind = "srs"
    if kind == "stratified":
        if strata is None:
            raise FineclassError(
                "design 'stratified' needs the stratum of every sampled document: add a `stratum` "
                "column (or name it with `stratum=`).",
                "stratum",
            )
        if prob is None:
            raise FineclassError(
                "design 'stratified' needs each sampled document's inclusion probability "
                "(n_h / N_h of its stratum): add a `probability` column.",
                "probability",
            )
        names, idx = np.unique(np.array([str(s) for s in strata], dtype=object), return_inverse=True)
        fraction = np.empty(len(names))
        for h in range(len(names)):
            ph = prob[idx == h]
            if np.ptp(ph) > 1e-9 * ph.max():
                raise FineclassError(
                    f"stratum {names[h]!r} has different probabilities "
                    f"({preview(sorted(set(ph.tolist()))[:4])}); in a stratified random sample every "
                    f"document of a stratum has the same one.",
                    "probability",
                )
            if (idx == h).sum() < 2:
                raise FineclassError(
                    f"stratum {names[h]!r} has one sampled document; its variance cannot be "
                    f"estimated. Draw at least two per stratum, or merge it with another.",
                    "stratum",
                )
            fraction[h] = ph.mean()
        return Design("stratified", np.asarray(prob, float), idx.astype(np.int64), fraction, list(names))
    if kind == "poisson":
        if prob is None:
            raise FineclassError(
                "design 'poisson' needs each sampled document's inclusion probability: add a `probability` column.",
                "probability",
            )
        return Design("poisson", np.asarray(prob, float), np.zeros(n, np.int64), np.array([np.nan]), ["all"])
    # simple random sample: the probabilities, if given, must be equal; the fraction is the one realised
    if prob is not None and np.ptp(prob) > 1e-9 * prob.max():
        raise FineclassError(
            "design 'srs' (a simple random sample) has one probability for every document, but "
            "`probability` varies; pass design='poisson' or design='stratified'.",
            "design",
        )
    frac = n / n_corpus if n_corpus else 1.0
    return Design("srs", np.full(n, frac), np.zeros(n, np.int64), np.array([frac]), ["all"])


def total_variance(
    z: np.ndarray,
    design: Design,
    zb: np.ndarray | None = None,
    *,
    pseudo: np.ndarray | None = None,
    pseudo_b: np.ndarray | None = None,
    pseudo_weight: float = 0.0,
    domain: np.ndarray | None = None,
) -> np.ndarray:
    """Design (co)variance of the weighted totals ``sum_S w_i z_i``, column by column.

    Pseudo-documents are added with ``pseudo_weight`` each to every stratum that holds documents of ``domain``,
    weighted by that stratum's mean weight; they keep an empty cell from giving a zero variance.

    Args:
        z: (n, k) unweighted values per sampled document (zero outside the domain).
        design: the sample's design.
        zb: (n, k) a second set of values: the covariance of the totals of z and zb, column by column.
        pseudo: (m, k) values of the pseudo-documents, or None.
        pseudo_b: (m, k) their values for ``zb`` (default: ``pseudo``).
        pseudo_weight: the weight of each pseudo-document (0: none).
        domain: (n,) mask of the sampled documents in the domain (default: all).

    Returns:
        (k,) the design variances (or covariances).
    """
    zb = z if zb is None else zb
    pb = pseudo if pseudo_b is None else pseudo_b
    w = design.weights[:, None]
    za, zb_ = z * w, zb * w
    use_pseudo = pseudo is not None and pseudo_weight > 0
    dom = np.ones(len(design), bool) if domain is None else domain
    if design.kind == "poisson":
        v = ((1 - design.prob)[:, None] * za * zb_).sum(0)
        if use_pseudo and dom.any():
            pbar = design.prob[dom].mean()
            v = v + pseudo_weight * (1 - pbar) * ((pseudo / pbar) * (pb / pbar)).sum(0)
        return v
    v = np.zeros(z.shape[1])
    for h in range(len(design.fraction)):
        rows = design.strata == h
        nh = int(rows.sum())
        a, b = za[rows], zb_[rows]
        sa, sb, wt = a.sum(0), b.sum(0), float(nh)
        pa = pbb = None
        if use_pseudo and dom[rows].any():
            wbar = design.weights[rows & dom].mean()
            pa, pbb = pseudo * wbar, pb * wbar
            sa, sb, wt = sa + pseudo_weight * pa.sum(0), sb + pseudo_weight * pbb.sum(0), wt + pseudo_weight * len(pa)
        if wt <= 1:
            continue
        ma, mb = sa / wt, sb / wt
        ss = ((a - ma) * (b - mb)).sum(0)
        if pa is not None:
            ss = ss + pseudo_weight * ((pa - ma) * (pbb - mb)).sum(0)
        v = v + nh * (1 - design.fraction[h]) * ss / (wt - 1)
    return v


def total_covariance(z: np.ndarray, design: Design) -> np.ndarray:
    """Design covariance matrix of the weighted totals ``sum_S w_i z_i`` of the columns of ``z``.

    Args:
        z: (n, k) unweighted values per sampled document.
        design: the sample's design.

    Returns:
        (k, k) the covariance matrix.
    """
    za = z * design.weights[:, None]
    if design.kind == "poisson":
        return (za * (1 - design.prob)[:, None]).T @ za
    k = z.shape[1]
    v = np.zeros((k, k))
    for h in range(len(design.fraction)):
        a = za[design.strata == h]
        if len(a) < 2:
            continue
        a = a - a.mean(0)
        v += len(a) * (1 - design.fraction[h]) * (a.T @ a) / (len(a) - 1)
    return v


def effective_df(z: np.ndarray, design: Design) -> np.ndarray:
    """Satterthwaite's degrees of freedom of the design variance of the totals of z's columns.

    The degrees of freedom are (sum a)^2 / sum a^2, where a_i is document i's term in the variance estimate.
    Few documents carrying the variance (a handful of disagreements between model and coders) give few degrees
    of freedom, and a wider t interval.

    Args:
        z: (n, k) unweighted values per sampled document.
        design: the sample's design.

    Returns:
        (k,) degrees of freedom (inf where the variance is zero).
    """
    za = z * design.weights[:, None]
    if design.kind == "poisson":
        a = (1 - design.prob)[:, None] * za**2
    else:
        a = np.zeros_like(za)
        for h in range(len(design.fraction)):
            rows = design.strata == h
            nh = int(rows.sum())
            if nh > 1:
                a[rows] = nh * (1 - design.fraction[h]) / (nh - 1) * (za[rows] - za[rows].mean(0)) ** 2
    return _satterthwaite([a])


def iid_df(*blocks: np.ndarray) -> np.ndarray:
    """Satterthwaite's degrees of freedom of the variance of a sum of independent sample means, one per block.

    Args:
        *blocks: (m_b, k) the values whose means are summed, one array per independent sample.

    Returns:
        (k,) degrees of freedom (inf where the variance is zero).
    """
    terms = []
    for b in blocks:
        if len(b) > 1:
            terms.append((b - b.mean(0)) ** 2 / (len(b) * (len(b) - 1)))
    return _satterthwaite(terms)


def _satterthwaite(terms: list) -> np.ndarray:
    tot = sum(a.sum(0) for a in terms)
    sq = sum((a**2).sum(0) for a in terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sq > 0, tot**2 / np.where(sq > 0, sq, 1.0), np.inf)
