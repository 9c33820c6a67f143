"""Drawing the human sample, with the inclusion probability of every drawn document."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from .._checks import whole_number
from ..errors import FineclassError, preview
from ..evaluation.coded import id_array
from ..tables import read_table
from ._inputs import unique_keys

SAMPLERS = ("simple", "stratified", "uncertainty")
ALLOCATIONS = ("proportional", "equal")


def draw_sample(
    data: Any,
    size: int,
    *,
    method: str = "simple",
    strata: str | None = None,
    allocation: str | Mapping = "proportional",
    uncertainty: str | None = None,
    uniform_share: float = 0.5,
    seed: int = 0,
    id: str = "id",
) -> pa.Table:
    """Draw the documents for human coding, reproducibly, each with its probability of being drawn.

    The probabilities are what :func:`fineclass.estimate` needs to turn the coders' codes into valid estimates.
    The documents are put in the order of their ids before drawing, so the same corpus and seed give the same
    sample whatever the order of the rows.

    - ``"simple"``: a simple random sample of ``size`` documents (probability size / N for each).
    - ``"stratified"``: a simple random sample within each stratum of the column ``strata`` (a group column, or
      ``"label"`` of single-label predictions), ``allocation`` deciding how many per stratum:
      ``"proportional"`` (to the stratum's size), ``"equal"``, or a mapping ``{stratum: count}``. Each stratum
      gets at least two documents (a variance needs two). Probability: n_h / N_h.
    - ``"uncertainty"``: Poisson sampling, each document drawn independently with a probability that grows with
      the model's uncertainty (the ``uncertainty`` column, else 1 - ``confidence``): ``size * (s / N + (1 - s) *
      u_i / sum(u))`` with ``s = uniform_share``, capped at 1. The uniform part keeps every document's
      probability above zero, which valid estimates need. The sample's size is random, ``size`` on average.

    Args:
        data: one row per document of the corpus (predictions, or any table with ids).
        size: the number of documents to draw (the expected number for ``"uncertainty"``).
        method: ``"simple"``, ``"stratified"`` or ``"uncertainty"``.
        strata: the stratum column for ``"stratified"``.
        allocation: for ``"stratified"``: ``"proportional"``, ``"equal"`` or ``{stratum: count}``.
        uncertainty: for ``"uncertainty"``: a column of the model's uncertainty (0 or more, higher means less
            sure); default ``1 - confidence``.
        uniform_share: for ``"uncertainty"``: the share of the sample drawn uniformly, in (0, 1].
        seed: the random seed.
        id: the id column.

    Returns:
        A pyarrow Table, one row per drawn document in id order: ``id``, ``probability`` (its inclusion
        probability), ``design`` (``srs``, ``stratified`` or ``poisson``) and ``stratum``.

    Raises:
        FineclassError: a size outside 1..N, an unknown column or method, strata too small for two documents,
            uncertainties that are negative or missing.

    Example:
        >>> sample = fineclass.draw_sample(predictions, 400, method="stratified", strata="label", seed=1)
    """
    if method not in SAMPLERS:
        raise FineclassError(f"`method` must be one of {', '.join(SAMPLERS)}; got {method!r}.", "method")
    table = read_table(data, "data")
    keys = id_array(table, id, "data").to_pylist()
    unique_keys(keys, "data")
    N = len(keys)
    size, seed = whole_number(size, "size", minimum=1), whole_number(seed, "seed", minimum=0)
    if size > N:
        raise FineclassError(f"`size` ({size}) is larger than the corpus ({N} documents).", "size")
    order = np.array(sorted(range(N), key=lambda i: keys[i]), dtype=np.int64)
    rng = np.random.default_rng(int(seed))
    ids = table.column(id)
    stratum_out = None
    if method == "simple":
        rows = np.sort(order[rng.choice(N, int(size), replace=False)])
        prob = np.full(len(rows), size / N)
        kind = "srs"
    elif method == "stratified":
        labels = _strata(table, strata)
        rows, prob, stratum_out = _stratified(labels, order, int(size), allocation, rng)
        kind = "stratified"
    else:
        u = _uncertainty(table, uncertainty)
        try:
            s = float(uniform_share)
        except (TypeError, ValueError):
            s = float("nan")
        if not 0 < s <= 1:
            raise FineclassError(f"`uniform_share` must be in (0, 1]; got {uniform_share!r}.", "uniform_share")
        pi = _poisson_probabilities(u, int(size), s)
        drawn = rng.random(N) < pi[order]
        rows = np.sort(order[drawn])
        prob = pi[rows]
        kind = "poisson"
    by_id = sorted(range(len(rows)), key=lambda k: keys[rows[k]])
    rows_sorted, prob = rows[by_id], prob[by_id]
    out = {
        "id": ids.take(pa.array(rows_sorted, pa.int64())),
        "probability": pa.array(prob, pa.float64()),
        "design": pa.array([kind] * len(rows_sorted), pa.string()),
    }
    out["stratum"] = pa.array(
        [stratum_out[r] for r in rows_sorted] if stratum_out is not None else [None] * len(rows_sorted), pa.string()
    )
    return pa.table(out)


def _strata(table: pa.Table, strata: str | None) -> list[str]:
    if strata is None:
        raise FineclassError(
            "method 'stratified' needs `strata=`: the column that defines the strata (a group "
            "column, or 'label' of single-label predictions).",
            "strata",
        )
    if strata not in table.column_names:
        raise FineclassError(
            f"column `{strata}` not found in `data`; columns are: {', '.join(table.column_names)}.", "strata"
        )
    t = table.schema.field(strata).type
    if pa.types.is_nested(t):
        raise FineclassError(
            f"the stratum column `{strata}` holds {t} values (several labels per document); "
            f"stratify by a column with one value per document, e.g. whether a label is "
            f"predicted.",
            "strata",
        )
    return ["(missing)" if v is None else str(v) for v in table.column(strata).to_pylist()]


def _stratified(labels: list[str], order: np.ndarray, size: int, allocation, rng):
    names = sorted(set(labels))
    members = {h: [] for h in names}
    for i in order:  # in id order, so the draw does not depend on the row order
        members[labels[i]].append(i)
    sizes = np.array([len(members[h]) for h in names])
    if isinstance(allocation, Mapping):
        given = {str(k): v for k, v in allocation.items()}
        unknown = [k for k in given if k not in members]
        if unknown:
            raise FineclassError(
                f"`allocation` names strata that are not in the data: {preview(unknown)}.", "allocation"
            )
        missing = [h for h in names if h not in given]
        if missing:
            raise FineclassError(
                f"`allocation` gives no count for the strata {preview(missing)}; each stratum needs "
                f"at least two documents, or its documents could never be drawn.",
                "allocation",
            )
        n_h = np.array([int(given[h]) for h in names])
    elif allocation in ALLOCATIONS:
        share = sizes / sizes.sum() if allocation == "proportional" else np.full(len(names), 1 / len(names))
        n_h = _apportion(size, share, sizes)
    else:
        raise FineclassError(
            f"`allocation` must be one of {', '.join(ALLOCATIONS)} or a mapping "
            f"{{stratum: count}}; got {allocation!r}.",
            "allocation",
        )
    small = [h for h, k, cap in zip(names, n_h, sizes) if k < min(2, cap) or k > cap]
    if not small and not isinstance(allocation, Mapping) and n_h.sum() != size:
        small = [h for h, k in zip(names, n_h) if k <= 2]
    if small:
        raise FineclassError(
            f"strata {preview(small)} would get fewer than two documents (or more than they hold) "
            f"from a sample of {size}; draw more, merge small strata, or give the counts in "
            f"`allocation`.",
            "size",
        )
    rows, prob, stratum = [], [], {}
    for h, k, cap in zip(names, n_h, sizes):
        pick = rng.choice(cap, int(k), replace=False)
        for i in np.asarray(members[h])[pick]:
            rows.append(int(i))
            prob.append(k / cap)
            stratum[int(i)] = h
    rows = np.array(rows, dtype=np.int64)
    return rows, np.array(prob), stratum


def _apportion(size: int, share: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Whole counts summing to ``size``, near ``size * share``, at least min(2, cap) and at most cap each."""
    n = np.minimum(np.maximum(np.floor(size * share).astype(int), np.minimum(2, caps)), caps)
    while n.sum() > size:  # the minimum of two took documents from the others: the largest gives first
        room = np.where(n > np.minimum(2, caps), n - size * share, -np.inf)
        if not np.isfinite(room).any():
            break
        n[int(np.lexsort((n, room))[-1])] -= 1
    while n.sum() < size:
        room = np.where(n < caps, size * share - n, -np.inf)
        if not np.isfinite(room).any():
            break
        n[int(np.lexsort((-n, room))[-1])] += 1
    return n


def _uncertainty(table: pa.Table, column: str | None) -> np.ndarray:
    if column is None:
        if "confidence" not in table.column_names:
            raise FineclassError(
                "method 'uncertainty' needs the model's uncertainty: pass `uncertainty=` with a "
                "column of it, or give `data` a `confidence` column (as Classifier.predict "
                "writes for single-label models).",
                "uncertainty",
            )
        conf = _numbers(table, "confidence", "uncertainty")
        if ((conf < 0) | (conf > 1)).any():
            raise FineclassError(
                "the `confidence` column holds values outside [0, 1]; pass `uncertainty=` instead.", "uncertainty"
            )
        return 1.0 - conf
    if column not in table.column_names:
        raise FineclassError(
            f"column `{column}` not found in `data`; columns are: {', '.join(table.column_names)}.", "uncertainty"
        )
    u = _numbers(table, column, "uncertainty")
    if (u < 0).any():
        raise FineclassError(
            f"the uncertainty column `{column}` holds negative values; higher must mean less sure, from 0 up.",
            "uncertainty",
        )
    return u


def _numbers(table: pa.Table, column: str, argument: str) -> np.ndarray:
    col = table.column(column)
    try:
        x = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise FineclassError(f"the column `{column}` holds {col.type} values, not numbers.", argument) from None
    if not np.isfinite(x).all():
        raise FineclassError(
            f"the column `{column}` has {int((~np.isfinite(x)).sum())} missing values; every document needs one.",
            argument,
        )
    return x


def _poisson_probabilities(u: np.ndarray, size: int, uniform_share: float) -> np.ndarray:
    """Size * (s / N + (1 - s) u / sum(u)), capped at 1 with the excess spread over the others."""
    N = len(u)
    share = np.full(N, 1.0 / N) if u.sum() <= 0 else uniform_share / N + (1 - uniform_share) * u / u.sum()
    pi = size * share
    for _ in range(N):
        over = pi > 1
        if not over.any():
            break
        excess = (pi[over] - 1).sum()
        pi[over] = 1.0
        free = pi < 1
        pi[free] += excess * pi[free] / pi[free].sum()
    return np.minimum(pi, 1.0)
