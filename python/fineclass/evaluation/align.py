"""Preparing an evaluation: predictions and truth aligned on the scored documents, the label set fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FineclassError, preview
from ..labels import DEFAULT_LEVELS, KINDS, LabelSpec, as_spec
from .coded import Layout, key_array, layout, read_coded, scored_ids, sorted_codes
from .common import plural, read, warn


@dataclass
class Prepared:
    """An evaluation made ready: the scored documents, their values in truth and in each model, the label set."""

    kind: str
    keys: list
    original: dict
    truth: list
    preds: list  # one list of per-document values per model
    classes: list  # classes (single, multi) or dimensions (dimlevel)
    levels: list | None
    names: dict
    notes: list
    n_empty: list  # per model: scored documents without prediction rows
    spec: LabelSpec | None
    cluster: np.ndarray | None = None


def prepare(
    predictions: Sequence[Any],
    truth: Any,
    *,
    spec: Any,
    kind: str | None,
    id: str,
    label: Any,
    ids: Any,
    on_mismatch: str,
    cluster: str | None,
    pred_names: Sequence[str] = ("predictions",),
) -> Prepared:
    """Predictions and truth aligned on the scored documents, with the label set fixed.

    Args:
        predictions: one table (or path) per model.
        truth: the human codes.
        spec: the label set (anything ``labels.as_spec`` reads), or None.
        kind: the shape, or None (inferred).
        id: the id column of every table.
        label: the label column, or a (dimension, level) pair, or None (found).
        ids: the documents to score, or None (those of ``truth``).
        on_mismatch: ``"error"`` or ``"intersect"``.
        cluster: a column of ``truth`` with each document's cluster, or None.
        pred_names: the predictions' argument names, for messages.

    Returns:
        A :class:`Prepared`: keys, values per document for truth and each model, classes, levels and notes.

    Raises:
        FineclassError: naming the argument at fault.
    """
    if on_mismatch not in ("error", "intersect"):
        raise FineclassError(f"`on_mismatch` must be 'error' or 'intersect'; got {on_mismatch!r}.", "on_mismatch")
    if kind is not None and kind not in KINDS:
        raise FineclassError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}.", "kind")
    spec = as_spec(spec)
    if spec is not None:
        if kind is not None and kind != spec.kind:
            raise FineclassError(f"`kind` is {kind!r} but `spec` is a {spec.kind} label set; leave `kind` out.", "kind")
        kind = spec.kind
    ttab = read(truth, "truth")
    ptabs = [read(p, n) for p, n in zip(predictions, pred_names)]
    tlay = layout(ttab, "truth", label, kind)
    if kind is None:
        kind = tlay.kind
        if kind is None:  # a scalar label column: single, unless ids repeat (one row per label)
            if id in ttab.column_names and pc.count_distinct(key_array(ttab.column(id))).as_py() < ttab.num_rows:
                kind = "multi"
                tlay = Layout("multi", "long", tlay.columns)
                _warn_read_as_multi(ttab, id)
            else:
                kind = "single"
        tlay = Layout(kind, tlay.fmt, tlay.columns)
    elif tlay.kind is None:
        tlay = Layout(kind, tlay.fmt, tlay.columns)
    if tlay.kind != kind:
        raise FineclassError(f"`truth` has the {tlay.kind} shape but `kind` is {kind!r}.", "kind")
    notes: list = []

    # the scored set
    if ids is not None:
        keys, original = scored_ids(ids, id)
        scored = set(keys)
    else:
        keys, original, scored = None, None, None
    tc = read_coded(ttab, "truth", tlay, kind, id, scored, "truth")
    if keys is None:
        keys, original, scored = list(tc.keys), dict(tc.original), set(tc.keys)
        if not keys:
            raise FineclassError("`truth` has no rows: there is nothing to score.", "truth")
    if kind == "single" and tc.null_labels:
        missing = [tc.original[k] for k in tc.keys if tc.values[k] is None]
        raise FineclassError(
            f"{len(missing)} documents in `truth` have no label (ids: {preview(missing)}). "
            f"Remove them, or pass `ids=` without them.",
            "truth",
        )

    pcs, layouts = [], []
    for ptab, name in zip(ptabs, pred_names):
        play = layout(ptab, name, label if not isinstance(label, str) or label in ptab.column_names else None, kind)
        if play.kind is None:
            play = Layout(kind, "long" if kind == "multi" else "document", play.columns)
        if play.kind != kind:
            raise FineclassError(
                f"`{name}` has the {play.kind} shape but `truth` has the {kind} shape. Pass "
                f"predictions of the same kind, or `kind=`.",
                name,
            )
        layouts.append(play)
        pcs.append(read_coded(ptab, name, play, kind, id, scored, "predictions"))

    # id mismatches
    def strict(fmt: str) -> bool:
        return kind == "single" or fmt == "document"

    drop: set = set()
    truth_missing = [k for k in keys if k not in tc.values]
    if truth_missing:
        if strict(tlay.fmt):
            msg = (
                f"{len(truth_missing)} of the {len(keys)} documents in `ids` are not in `truth` (ids: "
                f"{preview([original[k] for k in truth_missing])})."
            )
            if on_mismatch == "error":
                raise FineclassError(
                    msg + " Pass on_mismatch='intersect' to score only the documents in both, or fix `ids`.", "ids"
                )
            drop |= set(truth_missing)
            notes.append(msg + " They are not scored (on_mismatch='intersect').")
        else:
            notes.append(
                f"{len(truth_missing)} of the {len(keys)} scored documents have no rows in `truth`; "
                f"they count as documents without labels."
            )
    n_empty = []
    for pcd, play, name in zip(pcs, layouts, pred_names):
        absent = [k for k in keys if k not in pcd.values and k not in drop]
        problems = []
        if absent and (strict(play.fmt) or on_mismatch == "intersect"):
            problems.append(
                f"{len(absent)} of the {len(keys)} documents to score have no prediction in `{name}` "
                f"(ids: {preview([original[k] for k in absent])})"
            )
            n_empty.append(0)
        else:
            n_empty.append(len(absent))
            if absent:
                notes.append(
                    f"{len(absent)} of the {len(keys)} scored documents have no rows in `{name}`; they "
                    f"count as empty predictions (no label)."
                )
        if pcd.outside:
            if ids is None and strict(play.fmt):
                problems.append(
                    f"`{name}` holds {len(pcd.outside)} documents that are not in `truth` (ids: {preview(pcd.outside)})"
                )
            else:
                notes.append(
                    f"`{name}` holds {len(pcd.outside)} documents outside the scored set; they are not scored."
                )
        if problems:
            msg = "; ".join(problems) + "."
            if on_mismatch == "error":
                raise FineclassError(
                    msg + " Pass on_mismatch='intersect' to score only the documents in both, or "
                    "`ids=` with the documents to score.",
                    name,
                )
            drop |= set(absent)
            notes.append(msg + " They are not scored (on_mismatch='intersect').")
    if drop:
        keys = [k for k in keys if k not in drop]
        if not keys:
            raise FineclassError(
                "no document is in both `predictions` and `truth`; check the `id` columns.", "predictions"
            )

    # values, aligned on the scored keys
    empty = (lambda: None) if kind == "single" else (set if kind == "multi" else dict)
    tvals = [tc.values.get(k, empty()) for k in keys]
    pvals = [[pcd.values.get(k, empty()) for k in keys] for pcd in pcs]
    for pcd, name in zip(pcs, pred_names):
        if pcd.conflicts:
            msg = (
                f"`{name}` gives different labels for the same {'document' if kind != 'dimlevel' else 'cell'} "
                f"{pcd.conflicts} times ({'; '.join(pcd.conflict_examples)}"
                f"{'...' if pcd.conflicts > len(pcd.conflict_examples) else ''}); the row with the highest "
                f"confidence was kept, else the first row."
            )
            if kind == "single":
                msg += " If documents may carry several labels, pass kind='multi'."
            warn(msg)
            notes.append(msg)
        if kind == "single":
            nulls = sum(1 for v in pvals[pred_names.index(name)] if v is None)
            if nulls:
                notes.append(f"{nulls} documents have no label in `{name}`; they count as wrong.")

    # the label set
    names: dict = {}
    levels = None
    if spec is not None:
        classes = list(spec.classes)
        names = dict(spec.names)
        levels = list(spec.levels) if kind == "dimlevel" else None
        source = "`spec`"
    else:
        if kind == "single":
            classes = sorted_codes(set(tvals))
        elif kind == "multi":
            classes = sorted_codes(set().union(*tvals) if tvals else set())
        else:
            classes = sorted({d for m in tvals for d in m})
            seen = {lv for m in tvals for lv in m.values() if lv is not None}
            levels = list(DEFAULT_LEVELS) if seen <= set(DEFAULT_LEVELS) else sorted(seen)
        source = "`truth`"
    cset = set(classes)
    if spec is not None:  # truth outside the spec is a data error
        if kind == "single":
            bad = {v for v in tvals if v not in cset}
        elif kind == "multi":
            bad = {c for s in tvals for c in s if c not in cset}
        else:
            bad = {d for m in tvals for d in m if d not in cset}
            badlv = {lv for m in tvals for lv in m.values() if lv not in set(levels)}
            if badlv:
                raise FineclassError(
                    f"`truth` holds levels {preview(sorted(map(str, badlv)))} that are not in "
                    f"the levels of `spec` ({', '.join(levels)}).",
                    "truth",
                )
        if bad:
            raise FineclassError(
                f"`truth` holds labels {preview(sorted_codes(bad))} that are not in `spec` "
                f"({preview(classes)}). Pass the spec the labels were coded with.",
                "truth",
            )
    if kind == "single" and len(set(tvals)) < 2:
        warn(
            f"`truth` holds a single class ({preview(sorted(set(tvals)))}); per-class and chance-corrected "
            f"metrics are degenerate for these data."
        )
        notes.append("`truth` holds a single class.")
    for pv, name in zip(pvals, pred_names):
        _unknown_labels(pv, kind, cset, levels, name, source, notes)

    clusters = None
    if cluster is not None:
        clusters = _cluster_column(cluster, ttab, id, keys)
    return Prepared(
        kind=kind,
        keys=keys,
        original=original,
        truth=tvals,
        preds=pvals,
        classes=classes,
        levels=levels,
        names=names,
        notes=notes,
        n_empty=n_empty,
        spec=spec,
        cluster=clusters,
    )


def _warn_read_as_multi(ttab: pa.Table, id: str) -> None:
    """Say that repeated ids in ``truth`` made it a long multi-label table: they may be conflicting duplicates."""
    counts = pc.value_counts(key_array(ttab.column(id)))
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
    warn(
        f"`truth` has {plural(len(repeated), 'id')} on more than one row (ids: {preview(repeated)}), so it is read "
        f"as a long multi-label table (one row per label) and scored with multi-label metrics. If each document "
        f"has one label, these rows are conflicting duplicates: pass kind='single' to have them named as an "
        f"error. Pass kind='multi' to confirm the multi-label reading and silence this warning."
    )


def _unknown_labels(pv: list, kind: str, cset: set, levels: list | None, name: str, source: str, notes: list) -> None:
    if kind == "single":
        bad = [v for v in pv if v is not None and v not in cset]
        what = "class"
    elif kind == "multi":
        bad = [c for s in pv for c in s if c not in cset]
        what = "class"
    else:
        bad = [d for m in pv for d in m if d not in cset]
        what = "dimension"
        lvset = set(levels or [])
        badlv = [lv for m in pv for d, lv in m.items() if d in cset and lv not in lvset]
        if badlv:
            msg = (
                f"`{name}` holds {plural(len(badlv), 'label')} with levels outside the label set's levels "
                f"({', '.join(levels or [])}): {preview(sorted(set(map(str, badlv))))}. They are kept as "
                f"wrong predictions."
            )
            warn(msg)
            notes.append(msg)
    if bad:
        distinct = sorted_codes(set(bad))
        msg = (
            f"`{name}` holds {plural(len(bad), 'label')} outside {source} ({plural(len(distinct), what)}: "
            f"{preview(distinct, 5)}). They are kept as wrong predictions."
        )
        warn(msg)
        notes.append(msg)


def _cluster_column(cluster: str, ttab: pa.Table, id: str, keys: list) -> np.ndarray:
    if not isinstance(cluster, str):
        raise FineclassError(
            f"`cluster` must be the name of a column of `truth`; got {type(cluster).__name__}.", "cluster"
        )
    if cluster not in ttab.column_names:
        raise FineclassError(
            f"column `{cluster}` not found in `truth`; columns are: {', '.join(ttab.column_names)}. "
            f"Pass `cluster=` with the name of the column that holds each document's cluster.",
            "cluster",
        )
    kk = key_array(ttab.column(id)).to_pylist()
    cv = ttab.column(cluster).to_pylist()
    found: dict = {}
    for k, c in zip(kk, cv):
        if c is None:
            raise FineclassError(f"the cluster column `{cluster}` has missing values (document {k!r}).", "cluster")
        if k in found and found[k] != c:
            raise FineclassError(
                f"document {k!r} belongs to two clusters in `{cluster}` ({found[k]!r} and "
                f"{c!r}); a document belongs to one cluster.",
                "cluster",
            )
        found[k] = c
    missing = [k for k in keys if k not in found]
    if missing:
        raise FineclassError(
            f"{len(missing)} scored documents have no cluster in `{cluster}` (ids: {preview(missing)}).", "cluster"
        )
    _, codes = np.unique(np.array([str(found[k]) for k in keys], dtype=object), return_inverse=True)
    return codes.astype(np.int64)
