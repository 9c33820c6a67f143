"""Learning-curve arithmetic: a saturating curve fitted to runs, and the labels needed to reach a target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from .._checks import whole_number
from ..errors import FineclassError
from .common import check_confidence, num, warn


@dataclass
class CurveFit:
    """A saturating learning curve ``score = a - b * n ** (-c)`` fitted by least squares.

    ``b > 0`` for scores that rise with more labels, ``b < 0`` for losses that fall; ``a`` is the
    asymptote. ``boot`` holds (a, b, c) refitted on residual-bootstrap resamples of the runs.
    """

    a: float
    b: float
    c: float
    sizes: np.ndarray
    scores: np.ndarray
    rmse: float
    boot: np.ndarray
    notes: list = field(default_factory=list)

    def predict(self, sizes: Any) -> np.ndarray:
        """The fitted curve at some training sizes.

        Args:
            sizes: numbers of labelled documents.

        Returns:
            The scores the curve gives them.
        """
        n = np.asarray(sizes, dtype=float)
        return self.a - self.b * n ** (-self.c)

    def to_dict(self) -> dict:
        """The fit as plain data.

        Returns:
            model, a, b, c, rmse, sizes, scores, resamples and notes.
        """
        return {
            "model": "a - b * n^(-c)",
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "rmse": self.rmse,
            "sizes": self.sizes.tolist(),
            "scores": self.scores.tolist(),
            "resamples": int(len(self.boot)),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return (
            f"CurveFit(score = {self.a:.4g} - {self.b:.4g} * n^(-{self.c:.3g}); rmse {self.rmse:.3g}; "
            f"{len(np.unique(self.sizes))} sizes, {len(self.sizes)} runs)"
        )


_C_GRID = np.geomspace(0.02, 3.0, 300)


def _profile_fit(n: np.ndarray, Y: np.ndarray, grid: np.ndarray = _C_GRID):
    """Best (a, b, c) for each row of Y (R, N): for fixed c the model is linear in (a, b)."""
    X = n[None, :] ** (-grid[:, None])  # (G, N)
    xm = X.mean(1, keepdims=True)
    Xc = X - xm
    sxx = (Xc**2).sum(1)  # (G,)
    ym = Y.mean(1, keepdims=True)
    Yc = Y - ym  # (R, N)
    sxy = Yc @ Xc.T  # (R, G)
    slope = sxy / sxx[None, :]
    sse = (Yc**2).sum(1)[:, None] - slope * sxy  # (R, G)
    best = np.argmin(sse, axis=1)
    r = np.arange(Y.shape[0])
    s = slope[r, best]
    a = ym[:, 0] - s * xm[best, 0]
    return a, -s, grid[best], sse[r, best]


def fit_curve(sizes: Any, scores: Any, *, resamples: int = 200, seed: int = 0) -> CurveFit:
    """Fit ``score = a - b * n^(-c)`` to learning-curve runs (one row per size and seed).

    The uncertainty comes from the spread of the runs around the curve (seed to seed, and lack of fit): a residual
    bootstrap adds resampled residuals to the fitted curve and refits it ``resamples`` times.

    Args:
        sizes: the training size of each run (repeat a size once per seed).
        scores: each run's score.
        resamples: residual-bootstrap refits.
        seed: their seed.

    Returns:
        A :class:`CurveFit`.

    Raises:
        FineclassError: naming ``sizes`` or ``scores`` when they differ in length, hold undefined values, or cover
            fewer than three sizes.

    Example:
        >>> fit_curve([100, 200, 400, 800], [0.60, 0.66, 0.70, 0.72]).a  # doctest: +SKIP
    """
    n = np.asarray(sizes, dtype=float).ravel()
    y = np.asarray(scores, dtype=float).ravel()
    if n.shape != y.shape:
        raise FineclassError(f"`sizes` and `scores` must have the same length ({n.size} and {y.size}).", "scores")
    if not np.all(np.isfinite(y)):
        raise FineclassError("`scores` holds missing or undefined values; drop those runs first.", "scores")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise FineclassError("`sizes` must be positive numbers of labelled documents.", "sizes")
    distinct = np.unique(n)
    if distinct.size < 3:
        raise FineclassError(
            f"a learning curve needs at least three different training sizes; got {distinct.size}.", "sizes"
        )
    resamples = whole_number(resamples, "resamples", minimum=0)
    a, b, c, sse = _profile_fit(n, y[None, :])
    notes = []
    if c[0] in (_C_GRID[0], _C_GRID[-1]):
        notes.append(
            f"the exponent sits at the edge of its range ({c[0]:.3g}); the curve's shape is poorly "
            f"determined by these sizes."
        )
    boot = np.empty((0, 3))
    if resamples and n.size > 3:
        # residual bootstrap: the spread between seeds (and any lack of fit) added back to the fitted curve
        fitted = a[0] - b[0] * n ** (-c[0])
        resid = (y - fitted) * np.sqrt(n.size / (n.size - 3))
        rng = np.random.default_rng(seed)
        ystar = fitted[None, :] + resid[rng.integers(0, n.size, size=(resamples, n.size))]
        ba, bb, bc, _ = _profile_fit(n, ystar)
        boot = np.column_stack([ba, bb, bc])
    elif resamples:
        notes.append("only three runs: no uncertainty can be estimated; run more seeds per size.")
    rmse = float(np.sqrt(sse[0] / n.size))
    return CurveFit(float(a[0]), float(b[0]), float(c[0]), n, y, rmse, boot, notes)


def _invert(a, b, c, target, higher_is_better=True):
    """Training size at which the curve reaches ``target``.

    NaN where it never does, or where the curve moves the wrong way (a score that falls with more labels never
    "reaches" a higher target).
    """
    a, b, c = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = (a - target) / b
        right_way = b > 0 if higher_is_better else b < 0
        return np.where((ratio > 0) & right_way, ratio ** (-1.0 / c), np.nan)


def labels_needed(
    fit: CurveFit, target: float, *, confidence: float = 0.95, far: float = 2.0, higher_is_better: bool = True
) -> pa.Table:
    """How many labelled documents the fitted curve needs to reach ``target``, with an interval.

    Warns when the answer lies more than ``far`` times beyond the largest size trained.

    Args:
        fit: from :func:`fit_curve`.
        target: the score to reach.
        confidence: the level of the interval.
        far: how far beyond the largest size trained an answer may lie before it is warned about.
        higher_is_better: False for losses and error rates, which must fall to the target.

    Returns:
        One row: target, labels (null when the curve's asymptote does not reach the target, or when the curve does
        not improve with more labels), lower, upper (null when more than half the tail of resampled curves never
        reaches it), largest_size, extrapolation (labels / largest size trained), reachable_share (of the resampled
        curves).

    Raises:
        FineclassError: naming ``fit``, ``target`` or ``confidence`` when they are not what it takes.
    """
    if not isinstance(fit, CurveFit):
        raise FineclassError("`fit` must be the result of fit_curve().", "fit")
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise FineclassError(f"`target` must be a number; got {target!r}.", "target") from None
    conf = check_confidence(confidence)
    largest = float(fit.sizes.max())
    better = bool(higher_is_better)
    est = num(_invert(fit.a, fit.b, fit.c, target, better))
    if est is None and (fit.b > 0) != better:
        warn(
            f"the fitted curve does not {'rise' if better else 'fall'} with more labels (these runs score "
            f"{'no better' if better else 'no lower'} at larger sizes), so it cannot say how many labels reach "
            f"{target:g}; labels needed is null. Check the training settings, or train at larger sizes."
        )
    elif est is None:
        warn(f"the fitted curve levels off at {fit.a:.4g} and never reaches {target:g}; labels needed is null.")
    lo = hi = share = None
    if len(fit.boot):
        vals = _invert(fit.boot[:, 0], fit.boot[:, 1], fit.boot[:, 2], target, better)
        reach = np.isfinite(vals)
        share = float(reach.mean())
        alpha = (1 - conf) / 2
        if reach.any():
            # unreachable resamples count as infinitely many labels
            v = np.where(reach, vals, np.inf)
            with np.errstate(invalid="ignore"):
                lo_, hi_ = np.quantile(v, [alpha, 1 - alpha])
            lo = num(lo_)
            hi = num(hi_)
    ext = None if est is None else est / largest
    if ext is not None and ext > far:
        warn(
            f"reaching {target:g} needs about {est:,.0f} labels, {ext:.1f} times the largest training size "
            f"({largest:,.0f}): the curve is extrapolated far beyond the data and may be wrong."
        )
    return pa.table(
        {
            "target": [target],
            "labels": pa.array([est], pa.float64()),
            "lower": pa.array([lo], pa.float64()),
            "upper": pa.array([hi], pa.float64()),
            "largest_size": [largest],
            "extrapolation": pa.array([ext], pa.float64()),
            "reachable_share": pa.array([share], pa.float64()),
        }
    )
