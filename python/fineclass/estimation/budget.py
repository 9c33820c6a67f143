"""How many labels and coder-hours reach a target: hybrid review against coding from scratch."""

from __future__ import annotations

import math
from typing import Any, Mapping

import pyarrow as pa

from ..errors import FineclassError, preview
from ..tables import read_table


def plan_budget(
    labels: Any,
    proposers: Any = None,
    *,
    scratch_seconds: float,
    correction_seconds: float | None = None,
    hourly_rate: float | None = None,
) -> pa.Table:
    """Labels, documents, coder-hours and API cost to reach a target, by route.

    The number of labelled documents comes from a learning curve (:func:`fineclass.learning_curve` with a
    ``target``, or :func:`fineclass.evaluation.labels_needed`), with its interval. Each route produces that many
    training labels:

    - ``scratch``: a coder codes each document from scratch, ``scratch_seconds`` each.
    - ``review`` (per proposer): a model proposes, a coder accepts or rejects; a document yields a label when its
      proposal is accepted, so ``labels / acceptance`` documents are reviewed, at ``seconds`` per proposal
      (``items`` proposals per document) and ``cost`` of API per document.
    - ``review+correct`` (per proposer, when ``correction_seconds`` is given): every reviewed document yields a
      label; a rejected proposal costs ``correction_seconds`` more for the coder's own code.

    Args:
        labels: the labelled documents needed: a number, the table of ``labels_needed()`` (``labels``, and
            ``lower`` / ``upper`` for its interval), or a LearningCurve fitted with a target.
        proposers: per proposer, its ``acceptance`` (share of proposals accepted, in (0, 1]; ``rate`` as
            ``acceptance_report()["proposer"]`` names it is read too), ``seconds`` (coder seconds per proposal),
            and optionally ``items`` (proposals per document, default 1) and ``cost`` (API cost per document):
            a mapping ``{name: {"acceptance": ..., "seconds": ...}}`` or a table with a ``proposer`` column.
        scratch_seconds: coder seconds to code one document from scratch.
        correction_seconds: coder seconds to write a code for a rejected proposal.
        hourly_rate: the coders' cost per hour; adds ``total_cost`` (coder cost plus API cost).

    Returns:
        A pyarrow Table, one row per route: ``route``, ``proposer``, ``labels``, ``labels_low``, ``labels_high``,
        ``documents``, ``proposals``, ``coder_hours``, ``coder_hours_low``, ``coder_hours_high``, ``api_cost``,
        ``total_cost``, ``speedup`` (scratch coder-hours / this route's).

    Raises:
        FineclassError: a learning curve that does not reach its target, an acceptance outside (0, 1], times
            that are not positive.

    Example:
        >>> plan_budget(curve, {"llama": {"acceptance": 0.62, "seconds": 9}}, scratch_seconds=45)
    """
    mid, low, high = _labels(labels)
    scratch = _positive(scratch_seconds, "scratch_seconds")
    corr = None if correction_seconds is None else _positive(correction_seconds, "correction_seconds", zero=True)
    rate = None if hourly_rate is None else _positive(hourly_rate, "hourly_rate", zero=True)
    rows = []

    def add(route, proposer, hours_per_label, docs_per_label, proposals_per_label, cost_per_label):
        hours = [None if x is None else x * hours_per_label for x in (mid, low, high)]
        api = mid * cost_per_label
        rows.append(
            {
                "route": route,
                "proposer": proposer,
                "labels": mid,
                "labels_low": low,
                "labels_high": high,
                "documents": math.ceil(mid * docs_per_label - 1e-9),
                "proposals": math.ceil(mid * proposals_per_label - 1e-9),
                "coder_hours": hours[0],
                "coder_hours_low": hours[1],
                "coder_hours_high": hours[2],
                "api_cost": api,
                "total_cost": None if rate is None else hours[0] * rate + api,
            }
        )

    add("scratch", None, scratch / 3600, 1.0, 0.0, 0.0)
    for name, p in _proposers(proposers):
        a, s, items, cost = p["acceptance"], p["seconds"], p["items"], p["cost"]
        add("review", name, items * s / a / 3600, 1 / a, items / a, cost / a)
        if corr is not None:
            add("review+correct", name, (items * s + (1 - a) * corr) / 3600, 1.0, items, cost)
    base = rows[0]["coder_hours"]
    for r in rows:
        r["speedup"] = base / r["coder_hours"] if r["coder_hours"] > 0 else None
    schema = pa.schema(
        [
            ("route", pa.string()),
            ("proposer", pa.string()),
            ("labels", pa.float64()),
            ("labels_low", pa.float64()),
            ("labels_high", pa.float64()),
            ("documents", pa.int64()),
            ("proposals", pa.int64()),
            ("coder_hours", pa.float64()),
            ("coder_hours_low", pa.float64()),
            ("coder_hours_high", pa.float64()),
            ("api_cost", pa.float64()),
            ("total_cost", pa.float64()),
            ("speedup", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _positive(value: Any, name: str, zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if not math.isfinite(x) or x < 0 or (x == 0 and not zero):
        raise FineclassError(
            f"`{name}` must be a {'non-negative' if zero else 'positive'} number; got {value!r}.", name
        )
    return x


def _labels(labels: Any) -> tuple[float, float | None, float | None]:
    """(labels, lower, upper) from a number, a labels_needed() table or a LearningCurve."""
    if hasattr(labels, "needed") and hasattr(labels, "fit"):  # a LearningCurve
        if labels.needed is None:
            raise FineclassError(
                "this learning curve was fitted without a `target`, so it says nothing about the "
                "labels needed; run learning_curve(..., target=...) or pass a number.",
                "labels",
            )
        labels = labels.needed
    if isinstance(labels, (int, float)) and not isinstance(labels, bool):
        return _positive(labels, "labels"), None, None
    try:
        t = read_table(labels, "labels")
    except FineclassError:
        raise FineclassError(
            f"`labels` must be a number of labelled documents, a labels_needed() table or a "
            f"LearningCurve; got {type(labels).__name__}.",
            "labels",
        ) from None
    if "labels" not in t.column_names or t.num_rows != 1:
        raise FineclassError(
            "`labels` must be the one-row table of labels_needed() (with a `labels` column).", "labels"
        )
    row = t.to_pylist()[0]
    if row["labels"] is None:
        target = "" if row.get("target") is None else f" {row['target']:g}"
        raise FineclassError(
            f"the learning curve does not reach its target{target}: no number of labels is predicted "
            f"to get there. Lower the target, or train at larger sizes first.",
            "labels",
        )
    mid = _positive(row["labels"], "labels")
    low, high = row.get("lower"), row.get("upper")
    low = None if low is None or not math.isfinite(low) else float(low)
    high = None if high is None or not math.isfinite(high) else float(high)
    return mid, low, high


def _proposers(proposers: Any) -> list[tuple[str, dict]]:
    if proposers is None:
        return []
    if isinstance(proposers, Mapping):
        items = [(str(k), dict(v) if isinstance(v, Mapping) else v) for k, v in proposers.items()]
        bad = [k for k, v in items if not isinstance(v, dict)]
        if bad:
            raise FineclassError(
                f"`proposers` maps each name to a dict of acceptance and seconds; {preview(bad)} are not.", "proposers"
            )
    else:
        t = read_table(proposers, "proposers")
        if "proposer" not in t.column_names:
            raise FineclassError(
                f"`proposers` needs a `proposer` column; columns are: {', '.join(t.column_names)}.", "proposers"
            )
        items = [(str(r["proposer"]), r) for r in t.to_pylist()]
    out = []
    for name, p in items:
        acc = p.get("acceptance", p.get("rate"))
        try:
            a = float(acc)
        except (TypeError, ValueError):
            a = float("nan")
        if not 0 < a <= 1:
            raise FineclassError(
                f"proposer {name!r}: the acceptance must be a share in (0, 1]; got {acc!r}. A "
                f"proposer whose proposals are never accepted yields no labels.",
                "proposers",
            )
        if p.get("seconds") is None:
            raise FineclassError(
                f"proposer {name!r} has no `seconds` (coder seconds per proposal reviewed).", "proposers"
            )
        out.append(
            (
                name,
                {
                    "acceptance": a,
                    "seconds": _positive(p["seconds"], "proposers"),
                    "items": _positive(p.get("items") or 1, "proposers"),
                    "cost": _positive(p.get("cost") or 0, "proposers", zero=True),
                },
            )
        )
    return out
