"""Per-document statistics, the metrics that are functions of their sums, and the bootstrap engine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .._checks import whole_number
from ..errors import FineclassError
from .align import Prepared
from .common import check_confidence


@dataclass
class Stats:
    """Per-document statistics (n x m) and headline metrics that are functions of their column sums."""

    S: np.ndarray
    metrics: list  # (name, fn(sums (B, m), counts (B,)) -> (B,), why-undefined)


def f1(tp, t, p):
    """F1 from true positives, true and predicted counts (NaN where both counts are zero).

    Args:
        tp: true positives.
        t: true counts.
        p: predicted counts.

    Returns:
        2 tp / (t + p), elementwise.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        d = t + p
        return np.where(d > 0, 2.0 * tp / np.where(d > 0, d, 1), np.nan)


def _macro(tp, t, p):
    """Mean F1 over the classes that occur in truth or predictions (NaN when none does)."""
    f = f1(tp, t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(f, axis=-1)


def ratio(num, den):
    """Elementwise num / den, NaN where den is zero.

    Args:
        num: numerators.
        den: denominators.

    Returns:
        The ratios.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _blocks(start: int, width: int) -> tuple[slice, slice, slice]:
    """Three adjacent blocks of ``width`` columns of the statistics matrix, the first at column ``start``."""
    return tuple(slice(start + k * width, start + (k + 1) * width) for k in range(3))


def _stats_single(truth: list, pred: list, classes: list) -> Stats:
    K = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    n = len(truth)
    t = np.array([idx[v] for v in truth], dtype=np.int64) if all(v in idx for v in truth) else None
    if t is None:  # only when a truth class is outside the given classes, which prepare prevents
        raise FineclassError("internal: truth outside the label set.", "truth")
    p = np.array([idx.get(v, -1) if v is not None else -1 for v in pred], dtype=np.int64)
    S = np.zeros((n, 1 + 3 * K))
    rows = np.arange(n)
    S[:, 0] = t == p
    S[rows, 1 + t] = 1.0
    ok = p >= 0
    S[rows[ok], 1 + K + p[ok]] = 1.0
    hit = ok & (t == p)
    S[rows[hit], 1 + 2 * K + p[hit]] = 1.0
    T, P, TP = _blocks(1, K)

    def accuracy(s, c):
        return ratio(s[:, 0], c)

    def macro_f1(s, c):
        return _macro(s[:, TP], s[:, T], s[:, P])

    def weighted_f1(s, c):
        f = np.nan_to_num(f1(s[:, TP], s[:, T], s[:, P]))
        return ratio((f * s[:, T]).sum(1), s[:, T].sum(1))

    def kappa(s, c):
        po = ratio(s[:, 0], c)
        pe = ratio((s[:, T] * s[:, P]).sum(1), c.astype(float) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / np.where(np.isclose(pe, 1.0), 1, 1 - pe))

    return Stats(
        S,
        [
            ("accuracy", accuracy, "no documents"),
            ("macro_f1", macro_f1, "no class occurs"),
            ("weighted_f1", weighted_f1, "no class occurs"),
            ("kappa", kappa, "truth and predictions hold the same single class, so chance agreement is 1"),
        ],
    )


def _stats_multi(truth: list, pred: list, classes: list) -> Stats:
    K = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    n = len(truth)
    Y = np.zeros((n, K))
    Z = np.zeros((n, K))
    U = np.zeros(n)
    jac = np.zeros(n)
    exact = np.zeros(n)
    for i, (ts, ps) in enumerate(zip(truth, pred)):
        for c in ts:
            Y[i, idx[c]] = 1
        for c in ps:
            if c in idx:
                Z[i, idx[c]] = 1
            else:
                U[i] += 1
        union = len(ts | ps)
        jac[i] = 1.0 if union == 0 else len(ts & ps) / union
        exact[i] = float(ts == ps)
    ham = ((Y != Z).sum(1) + U) / max(K, 1)
    S = np.column_stack([exact, ham, jac, U, Y * Z, Y, Z])
    TP, T, P = _blocks(4, K)
    return Stats(
        S,
        [
            ("exact_match", lambda s, c: ratio(s[:, 0], c), "no documents"),
            ("hamming_loss", lambda s, c: ratio(s[:, 1], c), "no documents"),
            ("jaccard", lambda s, c: ratio(s[:, 2], c), "no documents"),
            (
                "micro_f1",
                lambda s, c: ratio(2 * s[:, TP].sum(1), s[:, T].sum(1) + s[:, P].sum(1) + s[:, 3]),
                "no labels in truth or predictions",
            ),
            ("macro_f1", lambda s, c: _macro(s[:, TP], s[:, T], s[:, P]), "no class occurs"),
        ],
    )


def _stats_dimlevel(truth: list, pred: list, dims: list) -> tuple[Stats, np.ndarray]:
    D = len(dims)
    idx = {d: i for i, d in enumerate(dims)}
    n = len(truth)
    cols = np.zeros((n, 10))
    perdim = np.zeros((n, 4 * D))  # presence tp, truth, pred; pair tp
    for i, (tm, pm) in enumerate(zip(truth, pred)):
        tpairs = set(tm.items())
        ppairs = set(pm.items())
        union = len(tpairs | ppairs)
        inter = len(tpairs & ppairs)
        cols[i, 1] = 1.0 if union == 0 else inter / union
        # cells are the label set's dimensions; predicted dimensions outside it are not cells
        mism = sum(1 for d in set(tm) | set(pm) if d in idx and tm.get(d) != pm.get(d))
        cols[i, 0] = 1.0 - mism / D if D else np.nan
        both = set(tm) & set(pm)
        cols[i, 2] = len(both)
        cols[i, 3] = len(tm)
        cols[i, 4] = len(pm)
        cols[i, 5] = inter
        cols[i, 6] = len(tpairs)
        cols[i, 7] = len(ppairs)
        cols[i, 8] = sum(1 for d in both if tm[d] == pm[d])
        cols[i, 9] = len(both)
        for d in tm:
            perdim[i, D + idx[d]] = 1
        for d in pm:
            if d in idx:
                perdim[i, 2 * D + idx[d]] = 1
        for d in both:
            if d in idx:
                perdim[i, idx[d]] = 1
                if tm[d] == pm[d]:
                    perdim[i, 3 * D + idx[d]] = 1
    S = np.column_stack([cols, perdim[:, : 3 * D]])
    TP, T, P = _blocks(10, D)
    return Stats(
        S,
        [
            ("accD", lambda s, c: ratio(s[:, 0], c), "no documents or no dimensions"),
            ("jaccard", lambda s, c: ratio(s[:, 1], c), "no documents"),
            (
                "presence_micro_f1",
                lambda s, c: ratio(2 * s[:, 2], s[:, 3] + s[:, 4]),
                "no dimension is present in truth or predictions",
            ),
            ("presence_macro_f1", lambda s, c: _macro(s[:, TP], s[:, T], s[:, P]), "no dimension occurs"),
            (
                "pair_micro_f1",
                lambda s, c: ratio(2 * s[:, 5], s[:, 6] + s[:, 7]),
                "no (dimension, level) pair in truth or predictions",
            ),
            (
                "level_accuracy",
                lambda s, c: ratio(s[:, 8], s[:, 9]),
                "no dimension is present in both truth and predictions",
            ),
        ],
    ), perdim


def stats_for(prep: Prepared, m: int):
    """The per-document statistics of one model's predictions.

    Args:
        prep: the prepared evaluation.
        m: the model's index in ``prep.preds``.

    Returns:
        ``(stats, per_dimension)``: a :class:`Stats`, and for dimlevel the per-dimension counts (else None).
    """
    if prep.kind == "single":
        return _stats_single(prep.truth, prep.preds[m], prep.classes), None
    if prep.kind == "multi":
        return _stats_multi(prep.truth, prep.preds[m], prep.classes), None
    return _stats_dimlevel(prep.truth, prep.preds[m], prep.classes)


def _units(S: np.ndarray, clusters: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Resampling units: documents, or clusters (their summed statistics and their document counts)."""
    if clusters is None:
        return S, np.ones(S.shape[0])
    G = int(clusters.max()) + 1
    sums = np.zeros((G, S.shape[1]))
    np.add.at(sums, clusters, S)
    return sums, np.bincount(clusters, minlength=G).astype(float)


def resampled(
    S: np.ndarray,
    fns: Sequence[Callable],
    resamples: int,
    rng: np.random.Generator,
    clusters: np.ndarray | None = None,
    cells: int = 4_000_000,
) -> np.ndarray:
    """Metric values on bootstrap resamples of the units (documents, or clusters) with replacement.

    Args:
        S: per-document statistics (n, m).
        fns: metrics, each ``fn(sums (B, m), counts (B,)) -> (B,)``.
        resamples: how many resamples.
        rng: the random generator.
        clusters: each document's cluster (resampled whole), or None.
        cells: the most resample-by-unit cells held at once.

    Returns:
        (resamples, len(fns)) values.
    """
    U, cnt = _units(S, clusters)
    G = U.shape[0]
    out = np.empty((resamples, len(fns)))
    step = max(1, cells // max(G, 1))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        draws = rng.integers(0, G, size=(b, G))
        if U.shape[1] <= 8:  # few statistics: gathering is cheaper than a weight matrix
            sums = U[draws].sum(axis=1)
            counts = cnt[draws].sum(axis=1)
        else:
            W = np.bincount((draws + (np.arange(b) * G)[:, None]).ravel(), minlength=b * G)
            W = W.reshape(b, G).astype(float)
            sums = W @ U
            counts = W @ cnt
        for j, f in enumerate(fns):
            out[start : start + b, j] = f(sums, counts)
    return out


def percentile(values: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    """A percentile interval from resampled values; undefined ones are left out and counted.

    Args:
        values: the resampled values.
        confidence: the interval's level.

    Returns:
        ``(lower, upper, undefined)``; lower and upper are None when no value is defined.
    """
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return None, None, values.size
    a = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(ok, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi), int(values.size - ok.size)


def bootstrap_ci(
    values: Any,
    *,
    statistic: Callable | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster: Any = None,
) -> tuple:
    """Percentile bootstrap interval of a statistic of per-document values.

    This is the engine behind every interval in :func:`evaluate`.

    Args:
        values: (n,) or (n, m) per-document values.
        statistic: ``statistic(sums, counts)`` maps the column sums of a resample (B, m) and its document counts
            (B,) to (B,) values; by default the mean of the first column.
        resamples: how many resamples.
        confidence: the interval's level.
        seed: the seed.
        cluster: optional (n,) cluster labels; clusters are resampled whole.

    Returns:
        ``(estimate, lower, upper)``.

    Raises:
        FineclassError: naming ``values``, ``resamples`` or ``confidence`` when they are not what it takes.

    Example:
        >>> bootstrap_ci([1, 0, 1, 1, 0, 1], resamples=200)  # doctest: +SKIP
    """
    S = np.asarray(values, dtype=float)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.shape[0] == 0:
        raise FineclassError("`values` must be a non-empty vector or matrix of per-document values.", "values")
    fn = statistic or (lambda s, c: s[:, 0] / c)
    clusters = None
    if cluster is not None:
        _, clusters = np.unique(np.asarray(cluster, dtype=object).astype(str), return_inverse=True)
    est = float(fn(S.sum(0)[None, :], np.array([float(S.shape[0])]))[0])
    resamples = whole_number(resamples, "resamples", minimum=1)
    vals = resampled(S, [fn], resamples, np.random.default_rng(seed), clusters)[:, 0]
    lo, hi, _ = percentile(vals, check_confidence(confidence))
    return est, lo, hi
