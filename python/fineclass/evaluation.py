"""Evaluation for social science: metrics, agreement with coders, bootstrap intervals, shares, curves.

- :func:`evaluate` scores predictions against human codes in any of the three label shapes
  (single, multi, dimension->level) and returns an :class:`Evaluation` of tidy tables, with
  percentile bootstrap intervals for every headline metric (documents, or clusters, resampled).
- :func:`paired_bootstrap` compares two models on the same documents.
- :func:`agreement` and :func:`model_vs_coders`: Cohen's kappa per pair of coders and
  Krippendorff's alpha overall (the ``krippendorff`` package does the arithmetic).
- :func:`label_shares`: the share of documents per label by group, with intervals.
- :func:`fit_curve` and :func:`labels_needed`: the arithmetic behind learning curves.

Inputs are anything :func:`fineclass.data.read_table` accepts. Predictions and truth may be
document-level tables (``id, label`` / ``id, labels``, as ``Classifier.predict`` returns them) or
long tables (``id, label`` one row per label, or ``id, dimension, level[, confidence]``).

Rules worth knowing (they are also stated in the notes of each result):

- The scored documents are ``ids=`` when given, else the ids of ``truth``.
- A long table cannot hold a document without labels, so for multi and dimlevel a scored document
  without rows in a long ``predictions`` (or ``truth``) table counts as an empty set of labels.
- Labels outside the label set are kept as wrong predictions and reported in a warning.
- Duplicated cells in ``predictions`` (the same id, or the same id and dimension, with different
  values): the row with the highest ``confidence`` wins; without a confidence, or on a tie, the
  first row in table order wins. A warning gives the count. In ``truth`` such conflicts are errors.
- accD counts the cells of the label set's dimensions (the spec's, or the union of the dimensions in
  ``truth``); a predicted dimension outside that set is not a cell of accD, but it counts against
  Jaccard and the presence F1 scores.
- A metric that is undefined for the data is reported as null (never NaN) with a warning.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._checks import whole_number
from .errors import FineclassError, preview, warn_user
from .labels import DEFAULT_LEVELS, KINDS, LabelSpec, as_spec, canon

__all__ = ["evaluate", "Evaluation", "paired_bootstrap", "bootstrap_ci", "agreement", "model_vs_coders",
           "label_shares", "fit_curve", "CurveFit", "labels_needed", "EvaluationWarning", "add_cli"]

_NONE = "\x00none"  # stands for a missing single-label prediction inside scikit-learn's arrays


class EvaluationWarning(UserWarning):
    """Something in the inputs changed what was scored (unknown labels, duplicates, undefined metrics)."""


def _warn(message: str) -> None:
    """Warn, pointing at the user's line: the first frame outside the fineclass package."""
    warn_user(message, EvaluationWarning)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else ("es" if word.endswith("s") else "s"))


# ====================================================================== argument checks
def _confidence_arg(confidence: Any) -> float:
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        c = float("nan")
    if not (0.0 < c < 1.0):
        raise FineclassError(f"`confidence` must be between 0 and 1 (e.g. 0.95); got {confidence!r}.",
                             "confidence")
    return c


def _read(data: Any, argument: str) -> pa.Table:
    from .tables import read_table
    if data is None:
        raise FineclassError(f"`{argument}` is missing: pass a table or the path of a Parquet/CSV file.", argument)
    return read_table(data, argument)


# ====================================================================== reading coded tables
def _key_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Ids as canonical strings, so that 7, 7.0 and "7" match across tables."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return pc.utf8_trim_whitespace(col.cast(pa.string()))
    return pa.array([None if v is None else canon(v) for v in col.to_pylist()], pa.string())


def _float_or_nan(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


@dataclass
class _Layout:
    kind: str | None   # single | multi | dimlevel | None ("scalar": single or long multi)
    fmt: str           # "document" (one row per document) or "long"
    columns: tuple     # (label,) or (dimension, level)


def _layout(table: pa.Table, argument: str, label: Any, kind: str | None) -> _Layout:
    cols = table.column_names

    def need(c: str) -> None:
        if c not in cols:
            raise FineclassError(f"column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}. "
                                 f"Pass `label=` with the name of the label column (or a pair: the dimension "
                                 f"and level columns).", "label")

    if label is not None and not isinstance(label, str):
        pair = [str(x) for x in label]
        if len(pair) != 2:
            raise FineclassError(f"`label` must be one column name or a pair (dimension, level); got {label!r}.",
                                 "label")
        need(pair[0]); need(pair[1])
        if kind not in (None, "dimlevel"):
            raise FineclassError(f"`label` names a (dimension, level) pair, which is the dimlevel shape, but "
                                 f"`kind` is {kind!r}.", "kind")
        return _Layout("dimlevel", "long", tuple(pair))
    if label is None:
        if kind in (None, "dimlevel") and "dimension" in cols and "level" in cols:
            return _Layout("dimlevel", "long", ("dimension", "level"))
        listy = [c for c in ("labels", "label") if c in cols and _is_list(table.schema.field(c).type)]
        scalar = [c for c in ("label", "labels") if c in cols and c not in listy]
        order = (scalar + listy) if kind == "single" else (listy + scalar)
        if not order and "dimension" in cols and "level" in cols:
            raise FineclassError(f"`{argument}` has `dimension` and `level` columns, the dimlevel shape, but `kind` "
                                 f"is {kind!r}. Leave `kind` out or pass kind='dimlevel'.", "kind")
        if not order:
            raise FineclassError(
                f"`{argument}` has no label column: looked for `label`, `labels`, or `dimension` and `level`; "
                f"columns are: {', '.join(cols)}. Pass `label=` with the name of the label column.", "label")
        label = order[0]
    need(label)
    t = table.schema.field(label).type
    if _is_list(t):
        inner = t.value_type
        if pa.types.is_struct(inner):
            names = [inner.field(i).name for i in range(inner.num_fields)]
            if "dimension" not in names or "level" not in names:
                raise FineclassError(f"the list column `{label}` of `{argument}` holds records without "
                                     f"`dimension` and `level` fields ({', '.join(names)}).", argument)
            found = "dimlevel"
        else:
            found = "multi"
        if kind not in (None, found):
            raise FineclassError(f"`kind` is {kind!r}, but column `{label}` of `{argument}` holds lists, which "
                                 f"is the {found} shape. Pass kind={found!r} or another column.", "kind")
        return _Layout(found, "document", (label,))
    if kind == "dimlevel":
        raise FineclassError(f"kind='dimlevel' needs a dimension and a level column in `{argument}`; pass "
                             f"`label=(\"dimension\", \"level\")` with their names.", "label")
    if kind == "multi":
        return _Layout("multi", "long", (label,))
    if kind == "single":
        return _Layout("single", "document", (label,))
    return _Layout(None, "document", (label,))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


@dataclass
class _Coded:
    """One table's labels per document: ``values[key]`` is a code, a set of codes, or {dimension: level}."""
    values: dict
    original: dict            # key -> the id as the user wrote it
    keys: list                # keys in first-seen order
    outside: list             # keys of this table that are not in the scored set
    conflicts: int = 0        # duplicated cells with different values (resolved by the rule)
    conflict_examples: list = field(default_factory=list)
    null_labels: int = 0


def _read_coded(table: pa.Table, argument: str, layout: _Layout, kind: str, id: str,
                scored: set | None, role: str) -> _Coded:
    """Fold a table into per-document values; ``role`` is "truth" (conflicts raise) or "predictions"."""
    if id not in table.column_names:
        raise FineclassError(f"column `{id}` not found in `{argument}`; columns are: "
                             f"{', '.join(table.column_names)}. Pass `id=` with the name of the id column.", "id")
    idcol = table.column(id)
    if idcol.null_count:
        raise FineclassError(f"`{argument}`: the id column `{id}` holds {idcol.null_count} missing values; every "
                             f"row needs an id.", argument)
    keys = _key_array(idcol)
    outside: list = []
    if scored is not None:
        value_set = pa.array(sorted(scored), pa.string())
        uniq = pc.unique(keys)
        outside = pc.filter(uniq, pc.invert(pc.is_in(uniq, value_set=value_set))).to_pylist()
        mask = pc.is_in(keys, value_set=value_set)
        if outside:  # the ids as the user wrote them, for messages
            seen_out: dict = {}
            for k, o in zip(pc.filter(keys, pc.invert(mask)).to_pylist(),
                            pc.filter(table.column(id), pc.invert(mask)).to_pylist()):
                seen_out.setdefault(k, o)
            outside = [seen_out[k] for k in outside]
        table = table.filter(mask)
        keys = pc.filter(keys, mask)
    key_list = keys.to_pylist()
    orig = table.column(id).to_pylist()
    conf = None
    if "confidence" in table.column_names and (layout.fmt == "long" or kind == "single"):
        conf = [_float_or_nan(v) for v in table.column("confidence").to_pylist()]
    out = _Coded(values={}, original={}, keys=[], outside=outside)
    for k, o in zip(key_list, orig):
        if k not in out.original:
            out.original[k] = o
            out.keys.append(k)

    def conflict(where: str, old: Any, new: Any) -> None:
        if role == "truth":
            raise FineclassError(f"`{argument}` gives two different labels for {where} ({old!r} and {new!r}); "
                                 f"keep one row per cell.", argument)
        out.conflicts += 1
        if len(out.conflict_examples) < 5:
            out.conflict_examples.append(where)

    def better(new_c: float, old_c: float) -> bool:  # the highest confidence wins; ties keep the first row
        return (not math.isnan(new_c)) and (math.isnan(old_c) or new_c > old_c)

    if kind == "single":
        col = table.column(layout.columns[0]).to_pylist()
        best_conf: dict = {}
        for r, (k, v) in enumerate(zip(key_list, col)):
            code = None if v is None or (isinstance(v, float) and math.isnan(v)) else canon(v)
            c = conf[r] if conf else float("nan")
            if k in out.values:
                if out.values[k] != code:
                    conflict(f"document {out.original[k]!r}", out.values[k], code)
                    if better(c, best_conf[k]):
                        out.values[k], best_conf[k] = code, c
                continue
            out.values[k], best_conf[k] = code, c
            if code is None:
                out.null_labels += 1
        return out
    if kind == "multi":
        col = table.column(layout.columns[0]).to_pylist()
        for k, v in zip(key_list, col):
            if layout.fmt == "document":
                codes = {canon(x) for x in (v or []) if x is not None}
                if k in out.values and out.values[k] != codes:
                    conflict(f"document {out.original[k]!r}", sorted(out.values[k]), sorted(codes))
                    continue  # document-level duplicates: the first row wins
                out.values.setdefault(k, codes)
            else:
                s = out.values.setdefault(k, set())
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    s.add(canon(v))
        return out
    # dimlevel
    best: dict = {}
    if layout.fmt == "long":
        dims = table.column(layout.columns[0]).to_pylist()
        levels = table.column(layout.columns[1]).to_pylist()
        rows = ((k, d, lv, conf[r] if conf else float("nan")) for r, (k, d, lv) in enumerate(zip(key_list, dims, levels)))
    else:
        lists = table.column(layout.columns[0]).to_pylist()
        for k in key_list:  # a document-level row with an empty list is a document without labels
            out.values.setdefault(k, {})
        rows = ((k, e.get("dimension"), e.get("level"), _float_or_nan(e.get("confidence")))
                for k, lst in zip(key_list, lists) for e in (lst or []) if e is not None)
    for k, d, lv, c in rows:
        m = out.values.setdefault(k, {})
        if d is None:
            continue
        d = canon(d)
        lv = None if lv is None else canon(lv)
        if d in m:
            if m[d] != lv:
                conflict(f"document {out.original[k]!r}, dimension {d!r}", m[d], lv)
                if better(c, best[(k, d)]):
                    m[d], best[(k, d)] = lv, c
            continue
        m[d], best[(k, d)] = lv, c
    return out


def _scored_ids(ids: Any, id: str) -> tuple[list, dict]:
    """The ``ids=`` argument as (keys, original) in the given order."""
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        values = ids.to_pylist()
    elif isinstance(ids, np.ndarray) or type(ids).__name__ == "Series":
        values = list(ids.tolist())
    elif isinstance(ids, (list, tuple, set, frozenset)):
        values = list(ids)
    else:
        t = _read(ids, "ids")
        if id not in t.column_names:
            raise FineclassError(f"`ids` has no column `{id}`; columns are: {', '.join(t.column_names)}. Pass a "
                                 f"list of ids or a table with an `{id}` column.", "ids")
        values = t.column(id).to_pylist()
    if any(v is None for v in values):
        raise FineclassError("`ids` holds missing values; pass the ids of the documents to score.", "ids")
    keys, original = [], {}
    for v in values:
        k = canon(v)
        if k not in original:
            original[k] = v
            keys.append(k)
    if not keys:
        raise FineclassError("`ids` is empty: there is nothing to score.", "ids")
    return keys, original


def _sorted_codes(codes: set) -> list:
    codes = [c for c in codes if c is not None]
    try:
        return sorted(codes, key=int)
    except ValueError:
        return sorted(codes)


# ====================================================================== preparing an evaluation
@dataclass
class _Prepared:
    kind: str
    keys: list
    original: dict
    truth: list
    preds: list            # one list of per-document values per model
    classes: list          # classes (single, multi) or dimensions (dimlevel)
    levels: list | None
    names: dict
    notes: list
    n_empty: list          # per model: scored documents without prediction rows
    spec: LabelSpec | None
    cluster: np.ndarray | None = None


def _prepare(predictions: Sequence[Any], truth: Any, *, spec: Any, kind: str | None, id: str, label: Any,
             ids: Any, on_mismatch: str, cluster: str | None,
             pred_names: Sequence[str] = ("predictions",)) -> _Prepared:
    if on_mismatch not in ("error", "intersect"):
        raise FineclassError(f"`on_mismatch` must be 'error' or 'intersect'; got {on_mismatch!r}.", "on_mismatch")
    if kind is not None and kind not in KINDS:
        raise FineclassError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}.", "kind")
    spec = as_spec(spec)
    if spec is not None:
        if kind is not None and kind != spec.kind:
            raise FineclassError(f"`kind` is {kind!r} but `spec` is a {spec.kind} label set; leave `kind` out.",
                                 "kind")
        kind = spec.kind
    ttab = _read(truth, "truth")
    ptabs = [_read(p, n) for p, n in zip(predictions, pred_names)]
    tlay = _layout(ttab, "truth", label, kind)
    if kind is None:
        kind = tlay.kind
        if kind is None:  # a scalar label column: single, unless ids repeat (one row per label)
            if id in ttab.column_names and pc.count_distinct(_key_array(ttab.column(id))).as_py() < ttab.num_rows:
                kind = "multi"
                tlay = _Layout("multi", "long", tlay.columns)
            else:
                kind = "single"
        tlay = _Layout(kind, tlay.fmt, tlay.columns)
    elif tlay.kind is None:
        tlay = _Layout(kind, tlay.fmt, tlay.columns)
    if tlay.kind != kind:
        raise FineclassError(f"`truth` has the {tlay.kind} shape but `kind` is {kind!r}.", "kind")
    notes: list = []

    # the scored set
    if ids is not None:
        keys, original = _scored_ids(ids, id)
        scored = set(keys)
    else:
        keys, original, scored = None, None, None
    tc = _read_coded(ttab, "truth", tlay, kind, id, scored, "truth")
    if keys is None:
        keys, original, scored = list(tc.keys), dict(tc.original), set(tc.keys)
        if not keys:
            raise FineclassError("`truth` has no rows: there is nothing to score.", "truth")
    if kind == "single" and tc.null_labels:
        missing = [tc.original[k] for k in tc.keys if tc.values[k] is None]
        raise FineclassError(f"{len(missing)} documents in `truth` have no label (ids: {preview(missing)}). "
                             f"Remove them, or pass `ids=` without them.", "truth")

    pcs, layouts = [], []
    for ptab, name in zip(ptabs, pred_names):
        play = _layout(ptab, name, label if not isinstance(label, str) or label in ptab.column_names else None,
                       kind)
        if play.kind is None:
            play = _Layout(kind, "long" if kind == "multi" else "document", play.columns)
        if play.kind != kind:
            raise FineclassError(f"`{name}` has the {play.kind} shape but `truth` has the {kind} shape. Pass "
                                 f"predictions of the same kind, or `kind=`.", name)
        layouts.append(play)
        pcs.append(_read_coded(ptab, name, play, kind, id, scored, "predictions"))

    # id mismatches
    def strict(fmt: str) -> bool:
        return kind == "single" or fmt == "document"

    drop: set = set()
    truth_missing = [k for k in keys if k not in tc.values]
    if truth_missing:
        if strict(tlay.fmt):
            msg = (f"{len(truth_missing)} of the {len(keys)} documents in `ids` are not in `truth` (ids: "
                   f"{preview([original[k] for k in truth_missing])}).")
            if on_mismatch == "error":
                raise FineclassError(msg + " Pass on_mismatch='intersect' to score only the documents in both, "
                                     "or fix `ids`.", "ids")
            drop |= set(truth_missing)
            notes.append(msg + " They are not scored (on_mismatch='intersect').")
        else:
            notes.append(f"{len(truth_missing)} of the {len(keys)} scored documents have no rows in `truth`; "
                         f"they count as documents without labels.")
    n_empty = []
    for pcd, play, name in zip(pcs, layouts, pred_names):
        absent = [k for k in keys if k not in pcd.values and k not in drop]
        problems = []
        if absent and (strict(play.fmt) or on_mismatch == "intersect"):
            problems.append(f"{len(absent)} of the {len(keys)} documents to score have no prediction in `{name}` "
                            f"(ids: {preview([original[k] for k in absent])})")
            n_empty.append(0)
        else:
            n_empty.append(len(absent))
            if absent:
                notes.append(f"{len(absent)} of the {len(keys)} scored documents have no rows in `{name}`; they "
                             f"count as empty predictions (no label).")
        if pcd.outside:
            if ids is None and strict(play.fmt):
                problems.append(f"`{name}` holds {len(pcd.outside)} documents that are not in `truth` (ids: "
                                f"{preview(pcd.outside)})")
            else:
                notes.append(f"`{name}` holds {len(pcd.outside)} documents outside the scored set; they are "
                             f"not scored.")
        if problems:
            msg = "; ".join(problems) + "."
            if on_mismatch == "error":
                raise FineclassError(msg + " Pass on_mismatch='intersect' to score only the documents in both, or "
                                     "`ids=` with the documents to score.", name)
            drop |= set(absent)
            notes.append(msg + " They are not scored (on_mismatch='intersect').")
    if drop:
        keys = [k for k in keys if k not in drop]
        if not keys:
            raise FineclassError("no document is in both `predictions` and `truth`; check the `id` columns.",
                                 "predictions")

    # values, aligned on the scored keys
    empty = (lambda: None) if kind == "single" else (set if kind == "multi" else dict)
    tvals = [tc.values.get(k, empty()) for k in keys]
    pvals = [[pcd.values.get(k, empty()) for k in keys] for pcd in pcs]
    for pcd, name in zip(pcs, pred_names):
        if pcd.conflicts:
            msg = (f"`{name}` gives different labels for the same {'document' if kind != 'dimlevel' else 'cell'} "
                   f"{pcd.conflicts} times ({'; '.join(pcd.conflict_examples)}"
                   f"{'...' if pcd.conflicts > len(pcd.conflict_examples) else ''}); the row with the highest "
                   f"confidence was kept, else the first row.")
            if kind == "single":
                msg += " If documents may carry several labels, pass kind='multi'."
            _warn(msg)
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
            classes = _sorted_codes(set(tvals))
        elif kind == "multi":
            classes = _sorted_codes(set().union(*tvals) if tvals else set())
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
                raise FineclassError(f"`truth` holds levels {preview(sorted(map(str, badlv)))} that are not in "
                                     f"the levels of `spec` ({', '.join(levels)}).", "truth")
        if bad:
            raise FineclassError(f"`truth` holds labels {preview(_sorted_codes(bad))} that are not in `spec` "
                                 f"({preview(classes)}). Pass the spec the labels were coded with.", "truth")
    if kind == "single" and len(set(tvals)) < 2:
        _warn(f"`truth` holds a single class ({preview(sorted(set(tvals)))}); per-class and chance-corrected "
              f"metrics are degenerate for these data.")
        notes.append("`truth` holds a single class.")
    for pv, name in zip(pvals, pred_names):
        _unknown_labels(pv, kind, cset, levels, name, source, notes)

    clusters = None
    if cluster is not None:
        clusters = _cluster_column(cluster, ttab, id, keys)
    return _Prepared(kind=kind, keys=keys, original=original, truth=tvals, preds=pvals, classes=classes,
                     levels=levels, names=names, notes=notes, n_empty=n_empty, spec=spec, cluster=clusters)


def _unknown_labels(pv: list, kind: str, cset: set, levels: list | None, name: str, source: str,
                    notes: list) -> None:
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
            msg = (f"`{name}` holds {_plural(len(badlv), 'label')} with levels outside the label set's levels "
                   f"({', '.join(levels or [])}): {preview(sorted(set(map(str, badlv))))}. They are kept as "
                   f"wrong predictions.")
            _warn(msg)
            notes.append(msg)
    if bad:
        distinct = _sorted_codes(set(bad))
        msg = (f"`{name}` holds {_plural(len(bad), 'label')} outside {source} ({_plural(len(distinct), what)}: "
               f"{preview(distinct, 5)}). They are kept as wrong predictions.")
        _warn(msg)
        notes.append(msg)


def _cluster_column(cluster: str, ttab: pa.Table, id: str, keys: list) -> np.ndarray:
    if not isinstance(cluster, str):
        raise FineclassError(f"`cluster` must be the name of a column of `truth`; got {type(cluster).__name__}.",
                             "cluster")
    if cluster not in ttab.column_names:
        raise FineclassError(f"column `{cluster}` not found in `truth`; columns are: {', '.join(ttab.column_names)}. "
                             f"Pass `cluster=` with the name of the column that holds each document's cluster.",
                             "cluster")
    kk = _key_array(ttab.column(id)).to_pylist()
    cv = ttab.column(cluster).to_pylist()
    found: dict = {}
    for k, c in zip(kk, cv):
        if c is None:
            raise FineclassError(f"the cluster column `{cluster}` has missing values (document {k!r}).", "cluster")
        if k in found and found[k] != c:
            raise FineclassError(f"document {k!r} belongs to two clusters in `{cluster}` ({found[k]!r} and "
                                 f"{c!r}); a document belongs to one cluster.", "cluster")
        found[k] = c
    missing = [k for k in keys if k not in found]
    if missing:
        raise FineclassError(f"{len(missing)} scored documents have no cluster in `{cluster}` (ids: "
                             f"{preview(missing)}).", "cluster")
    _, codes = np.unique(np.array([str(found[k]) for k in keys], dtype=object), return_inverse=True)
    return codes.astype(np.int64)


# ====================================================================== per-document statistics
@dataclass
class _Stats:
    """Per-document statistics (n x m) and headline metrics that are functions of their column sums."""
    S: np.ndarray
    metrics: list   # (name, fn(sums (B, m), counts (B,)) -> (B,), why-undefined)


def _f1(tp, t, p):
    with np.errstate(invalid="ignore", divide="ignore"):
        d = t + p
        return np.where(d > 0, 2.0 * tp / np.where(d > 0, d, 1), np.nan)


def _macro(tp, t, p):
    """Mean F1 over the classes that occur in truth or predictions (NaN when none does)."""
    f = _f1(tp, t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(f, axis=-1)


def _ratio(num, den):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _stats_single(truth: list, pred: list, classes: list) -> _Stats:
    K = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    n = len(truth)
    t = np.array([idx[v] for v in truth], dtype=np.int64) if all(v in idx for v in truth) else None
    if t is None:  # only when a truth class is outside the given classes, which _prepare prevents
        raise FineclassError("internal: truth outside the label set.", "truth")
    p = np.array([idx.get(v, -1) if v is not None else -1 for v in pred], dtype=np.int64)
    S = np.zeros((n, 1 + 3 * K))
    rows = np.arange(n)
    S[:, 0] = (t == p)
    S[rows, 1 + t] = 1.0
    ok = p >= 0
    S[rows[ok], 1 + K + p[ok]] = 1.0
    hit = ok & (t == p)
    S[rows[hit], 1 + 2 * K + p[hit]] = 1.0
    T = slice(1, 1 + K); P = slice(1 + K, 1 + 2 * K); TP = slice(1 + 2 * K, 1 + 3 * K)

    def accuracy(s, c):
        return _ratio(s[:, 0], c)

    def macro_f1(s, c):
        return _macro(s[:, TP], s[:, T], s[:, P])

    def weighted_f1(s, c):
        f = np.nan_to_num(_f1(s[:, TP], s[:, T], s[:, P]))
        return _ratio((f * s[:, T]).sum(1), s[:, T].sum(1))

    def kappa(s, c):
        po = _ratio(s[:, 0], c)
        pe = _ratio((s[:, T] * s[:, P]).sum(1), c.astype(float) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isclose(pe, 1.0), np.nan, (po - pe) / np.where(np.isclose(pe, 1.0), 1, 1 - pe))

    return _Stats(S, [("accuracy", accuracy, "no documents"),
                      ("macro_f1", macro_f1, "no class occurs"),
                      ("weighted_f1", weighted_f1, "no class occurs"),
                      ("kappa", kappa, "truth and predictions hold the same single class, so chance agreement "
                                       "is 1")])


def _stats_multi(truth: list, pred: list, classes: list) -> _Stats:
    K = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    n = len(truth)
    Y = np.zeros((n, K)); Z = np.zeros((n, K)); U = np.zeros(n)
    jac = np.zeros(n); exact = np.zeros(n)
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
    TP = slice(4, 4 + K); T = slice(4 + K, 4 + 2 * K); P = slice(4 + 2 * K, 4 + 3 * K)
    return _Stats(S, [
        ("exact_match", lambda s, c: _ratio(s[:, 0], c), "no documents"),
        ("hamming_loss", lambda s, c: _ratio(s[:, 1], c), "no documents"),
        ("jaccard", lambda s, c: _ratio(s[:, 2], c), "no documents"),
        ("micro_f1", lambda s, c: _ratio(2 * s[:, TP].sum(1), s[:, T].sum(1) + s[:, P].sum(1) + s[:, 3]),
         "no labels in truth or predictions"),
        ("macro_f1", lambda s, c: _macro(s[:, TP], s[:, T], s[:, P]), "no class occurs"),
    ])


def _stats_dimlevel(truth: list, pred: list, dims: list) -> tuple[_Stats, np.ndarray]:
    D = len(dims)
    idx = {d: i for i, d in enumerate(dims)}
    n = len(truth)
    cols = np.zeros((n, 10))
    perdim = np.zeros((n, 4 * D))  # presence tp, truth, pred; pair tp
    for i, (tm, pm) in enumerate(zip(truth, pred)):
        tpairs = set(tm.items()); ppairs = set(pm.items())
        union = len(tpairs | ppairs)
        inter = len(tpairs & ppairs)
        cols[i, 1] = 1.0 if union == 0 else inter / union
        # cells are the label set's dimensions; predicted dimensions outside it are not cells
        mism = sum(1 for d in set(tm) | set(pm) if d in idx and tm.get(d) != pm.get(d))
        cols[i, 0] = 1.0 - mism / D if D else np.nan
        both = set(tm) & set(pm)
        cols[i, 2] = len(both); cols[i, 3] = len(tm); cols[i, 4] = len(pm)
        cols[i, 5] = inter; cols[i, 6] = len(tpairs); cols[i, 7] = len(ppairs)
        cols[i, 8] = sum(1 for d in both if tm[d] == pm[d]); cols[i, 9] = len(both)
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
    S = np.column_stack([cols, perdim[:, :3 * D]])
    TP = slice(10, 10 + D); T = slice(10 + D, 10 + 2 * D); P = slice(10 + 2 * D, 10 + 3 * D)
    return _Stats(S, [
        ("accD", lambda s, c: _ratio(s[:, 0], c), "no documents or no dimensions"),
        ("jaccard", lambda s, c: _ratio(s[:, 1], c), "no documents"),
        ("presence_micro_f1", lambda s, c: _ratio(2 * s[:, 2], s[:, 3] + s[:, 4]),
         "no dimension is present in truth or predictions"),
        ("presence_macro_f1", lambda s, c: _macro(s[:, TP], s[:, T], s[:, P]), "no dimension occurs"),
        ("pair_micro_f1", lambda s, c: _ratio(2 * s[:, 5], s[:, 6] + s[:, 7]),
         "no (dimension, level) pair in truth or predictions"),
        ("level_accuracy", lambda s, c: _ratio(s[:, 8], s[:, 9]),
         "no dimension is present in both truth and predictions"),
    ]), perdim


def _stats_for(prep: _Prepared, m: int):
    if prep.kind == "single":
        return _stats_single(prep.truth, prep.preds[m], prep.classes), None
    if prep.kind == "multi":
        return _stats_multi(prep.truth, prep.preds[m], prep.classes), None
    return _stats_dimlevel(prep.truth, prep.preds[m], prep.classes)


# ====================================================================== the bootstrap engine
def _units(S: np.ndarray, clusters: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Resampling units: documents, or clusters (their summed statistics and their document counts)."""
    if clusters is None:
        return S, np.ones(S.shape[0])
    G = int(clusters.max()) + 1
    sums = np.zeros((G, S.shape[1]))
    np.add.at(sums, clusters, S)
    return sums, np.bincount(clusters, minlength=G).astype(float)


def _resampled(S: np.ndarray, fns: Sequence[Callable], resamples: int, rng: np.random.Generator,
               clusters: np.ndarray | None = None, cells: int = 4_000_000) -> np.ndarray:
    """(resamples, len(fns)) metric values, each from one resample of the units with replacement."""
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
            out[start:start + b, j] = f(sums, counts)
    return out


def _percentile(values: np.ndarray, confidence: float) -> tuple[float | None, float | None, int]:
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return None, None, values.size
    a = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(ok, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi), int(values.size - ok.size)


def bootstrap_ci(values: Any, *, statistic: Callable | None = None, resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, cluster: Any = None) -> tuple:
    """Percentile bootstrap interval of a statistic of per-document values.

    ``values``: (n,) or (n, m) per-document values. ``statistic(sums, counts)`` maps the column sums of a
    resample (B, m) and its document counts (B,) to (B,) values; by default the mean of the first column.
    ``cluster``: optional (n,) cluster labels; clusters are resampled whole.
    Returns ``(estimate, lower, upper)``; this is the engine behind every interval in :func:`evaluate`.
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
    vals = _resampled(S, [fn], whole_number(resamples, "resamples", minimum=1), np.random.default_rng(seed), clusters)[:, 0]
    lo, hi, _ = _percentile(vals, _confidence_arg(confidence))
    return est, lo, hi


# ====================================================================== the Evaluation
def _num(x: Any) -> float | None:
    """A float, or None for anything undefined (NaN never leaves this module)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Evaluation:
    """The scores of one set of predictions against the truth.

    Attributes: ``kind``, ``n`` (documents scored), ``metrics`` (pyarrow Table: metric, estimate, lower,
    upper, n), ``per_class`` (single, multi), ``confusion`` (single: truth, predicted, n),
    ``per_dimension`` (dimlevel), ``per_document``, ``notes`` (list of str), ``n_empty_predictions``,
    ``confidence`` and ``bootstrap`` (resamples; 0 = no intervals).
    """

    def __init__(self, kind: str, metrics: pa.Table, notes: list, *, per_class: pa.Table | None = None,
                 confusion: pa.Table | None = None, per_dimension: pa.Table | None = None,
                 per_document: pa.Table | None = None, n_empty_predictions: int = 0, confidence: float = 0.95,
                 bootstrap: int = 0, spec: LabelSpec | None = None):
        self.kind = kind
        self.metrics = metrics
        self.notes = list(notes)
        self.per_class = per_class
        self.confusion = confusion
        self.per_dimension = per_dimension
        self.per_document = per_document
        self.n_empty_predictions = n_empty_predictions
        self.confidence = confidence
        self.bootstrap = bootstrap
        self.spec = spec
        self.n = per_document.num_rows if per_document is not None else None

    def get(self, metric: str) -> float | None:
        """The estimate of one headline metric (None when undefined)."""
        names = self.metrics.column("metric").to_pylist()
        if metric not in names:
            raise FineclassError(f"no metric {metric!r}; this evaluation has: {', '.join(names)}.", "metric")
        return self.metrics.column("estimate")[names.index(metric)].as_py()

    def __getitem__(self, metric: str) -> float | None:
        return self.get(metric)

    def to_dict(self) -> dict:
        """Every table by name (for R: a named list of data frames); notes as a one-column table."""
        out = {"metrics": self.metrics}
        for name in ("per_class", "confusion", "per_dimension", "per_document"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t
        out["notes"] = pa.table({"note": pa.array(self.notes, pa.string())})
        return out

    def __repr__(self) -> str:
        head = f"Evaluation ({self.kind}, {self.n} documents"
        head += (f", {self.confidence:.0%} bootstrap intervals from {self.bootstrap} resamples)" if self.bootstrap
                 else ", no intervals)")
        rows = self.metrics.to_pylist()
        w = max(len(r["metric"]) for r in rows) if rows else 6

        def f(x):
            return "   null" if x is None else f"{x:7.3f}"
        lines = [head, f"  {'metric':<{w}}  estimate  interval"]
        for r in rows:
            iv = f"[{f(r['lower']).strip()}, {f(r['upper']).strip()}]" if r["lower"] is not None else ""
            lines.append(f"  {r['metric']:<{w}}  {f(r['estimate'])}   {iv}")
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # notebooks
        import html
        return "<pre>" + html.escape(repr(self)) + "</pre>"


def _metric_table(stats: _Stats, n: int, resamples: int, confidence: float, seed: int,
                  clusters: np.ndarray | None, notes: list) -> pa.Table:
    fns = [f for _, f, _ in stats.metrics]
    full = stats.S.sum(0)[None, :]
    est = [float(f(full, np.array([float(n)]))[0]) for f in fns]
    boot = (_resampled(stats.S, fns, resamples, np.random.default_rng(seed), clusters)
            if resamples else None)
    rows = {"metric": [], "estimate": [], "lower": [], "upper": [], "n": []}
    for j, (name, _, why) in enumerate(stats.metrics):
        e = _num(est[j])
        lo = hi = None
        if e is None:
            msg = f"{name} is undefined for these data ({why}); it is reported as null."
            _warn(msg)
            notes.append(msg)
        elif boot is not None:
            lo, hi, bad = _percentile(boot[:, j], confidence)
            if bad:
                notes.append(f"{name}: {bad} of {resamples} resamples left it undefined; its interval comes "
                             f"from the others.")
        rows["metric"].append(name); rows["estimate"].append(e)
        rows["lower"].append(lo); rows["upper"].append(hi); rows["n"].append(n)
    return pa.table({"metric": pa.array(rows["metric"], pa.string()),
                     "estimate": pa.array(rows["estimate"], pa.float64()),
                     "lower": pa.array(rows["lower"], pa.float64()),
                     "upper": pa.array(rows["upper"], pa.float64()),
                     "n": pa.array(rows["n"], pa.int64())})


def _nulls(a: np.ndarray) -> pa.Array:
    return pa.array([_num(x) for x in np.asarray(a, dtype=float)], pa.float64())


def _ids_array(prep: _Prepared) -> pa.Array:
    vals = [prep.original[k] for k in prep.keys]
    try:
        return pa.array(vals)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([str(v) for v in vals], pa.string())


def _tables_single(prep: _Prepared, S: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    classes = prep.classes
    y_true = np.array(prep.truth, dtype=object)
    y_pred = np.array([_NONE if v is None else v for v in prep.preds[0]], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=np.nan)
    predicted = [int((y_pred == c).sum()) for c in classes]
    per_class = pa.table({
        "class": pa.array(classes, pa.string()),
        "name": pa.array([prep.names.get(c, c) for c in classes], pa.string()),
        "support": pa.array(sup.astype(np.int64)), "predicted": pa.array(predicted, pa.int64()),
        "precision": _nulls(prec), "recall": _nulls(rec), "f1": _nulls(f1)})
    extra = [c for c in _sorted_codes(set(y_pred) - set(classes) - {_NONE})]
    cols = classes + extra + ([_NONE] if (y_pred == _NONE).any() else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = confusion_matrix(y_true, y_pred, labels=cols)
    cm = cm[:len(classes)]
    confusion = pa.table({
        "truth": pa.array([t for t in classes for _ in cols], pa.string()),
        "predicted": pa.array([None if p == _NONE else p for _ in classes for p in cols], pa.string()),
        "n": pa.array(cm.ravel().astype(np.int64))})
    per_document = pa.table({"id": _ids_array(prep), "truth": pa.array(prep.truth, pa.string()),
                             "predicted": pa.array(prep.preds[0], pa.string()),
                             "correct": pa.array(S[:, 0].astype(bool))})
    return {"per_class": per_class, "confusion": confusion, "per_document": per_document}


def _tables_multi(prep: _Prepared, S: np.ndarray) -> dict:
    K = len(prep.classes)
    Y = S[:, 4 + K:4 + 2 * K]; Z = S[:, 4 + 2 * K:4 + 3 * K]
    # per class by hand (scikit-learn's formulas): its multilabel check refuses one class or none
    Yb, Zb = Y.astype(bool), Z.astype(bool)
    tp, sup, npred = (Yb & Zb).sum(0).astype(np.float64), Yb.sum(0), Zb.sum(0)
    prec = np.where(npred > 0, tp / np.maximum(npred, 1), np.nan)
    rec = np.where(sup > 0, tp / np.maximum(sup, 1), np.nan)
    f1 = np.where(sup + npred > 0, 2 * tp / np.maximum(sup + npred, 1), np.nan)
    per_class = pa.table({
        "class": pa.array(prep.classes, pa.string()),
        "name": pa.array([prep.names.get(c, c) for c in prep.classes], pa.string()),
        "support": pa.array(sup.astype(np.int64)), "predicted": pa.array(Z.sum(0).astype(np.int64)),
        "precision": _nulls(prec), "recall": _nulls(rec), "f1": _nulls(f1)})
    per_document = pa.table({"id": _ids_array(prep), "n_truth": pa.array(Y.sum(1).astype(np.int64)),
                             "n_predicted": pa.array((Z.sum(1) + S[:, 3]).astype(np.int64)),
                             "exact_match": pa.array(S[:, 0].astype(bool)), "jaccard": pa.array(S[:, 2])})
    return {"per_class": per_class, "per_document": per_document}


def _tables_dimlevel(prep: _Prepared, S: np.ndarray, perdim: np.ndarray) -> dict:
    D = len(prep.classes)
    tot = perdim.sum(0)
    tp, t, p, pair = tot[:D], tot[D:2 * D], tot[2 * D:3 * D], tot[3 * D:]
    per_dimension = pa.table({
        "dimension": pa.array(prep.classes, pa.string()),
        "support": pa.array(t.astype(np.int64)), "predicted": pa.array(p.astype(np.int64)),
        "precision": _nulls(_ratio(tp, p)), "recall": _nulls(_ratio(tp, t)), "f1": _nulls(_f1(tp, t, p)),
        "pair_f1": _nulls(_f1(pair, t, p)), "level_accuracy": _nulls(_ratio(pair, tp))})
    per_document = pa.table({"id": _ids_array(prep), "n_truth": pa.array(S[:, 3].astype(np.int64)),
                             "n_predicted": pa.array(S[:, 4].astype(np.int64)),
                             "accD": _nulls(S[:, 0]), "jaccard": pa.array(S[:, 1])})
    return {"per_dimension": per_dimension, "per_document": per_document}


def evaluate(predictions: Any, truth: Any, *, spec: Any = None, kind: str | None = None, id: str = "id",
             label: Any = None, ids: Any = None, on_mismatch: str = "error", bootstrap: int = 1000,
             confidence: float = 0.95, seed: int = 0, cluster: str | None = None) -> Evaluation:
    """Score predictions against human codes.

    Parameters
    ----------
    predictions, truth: tables or paths. Document-level (``id, label`` or ``id, labels``) or long
        (``id, label`` one row per label; ``id, dimension, level[, confidence]``). Other columns
        (e.g. ``split``) are ignored: filter ``truth`` yourself to score one split.
    spec: the LabelSpec (or its dict, its JSON path, or a fitted Classifier). Without it the label
        set is the classes (or dimensions) found in ``truth``.
    kind: ``"single"``, ``"multi"`` or ``"dimlevel"``; inferred from ``spec`` or ``truth`` when left out
        (a scalar label column with repeated ids is multi-label).
    id: the name of the id column in both tables. label: the label column, or a (dimension, level) pair.
    ids: the documents to score (a list, or a table with an ``id`` column); default: the ids of ``truth``.
    on_mismatch: ``"error"`` (default) raises when predictions and truth cover different documents
        (for single-label, or document-level tables); ``"intersect"`` scores the documents in both.
    bootstrap: resamples for the percentile intervals (0: none). confidence: their level. seed: their seed.
    cluster: a column of ``truth`` naming each document's cluster; clusters are resampled whole.

    Headline metrics: single: accuracy, macro_f1, weighted_f1, kappa (Cohen's, model vs truth);
    multi: exact_match, hamming_loss, jaccard, micro_f1, macro_f1; dimlevel: accD, jaccard,
    presence_micro_f1, presence_macro_f1, pair_micro_f1, level_accuracy. Macro averages run over the
    classes of the label set that occur in the truth or the predictions.
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=0)
    conf = _confidence_arg(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    prep = _prepare([predictions], truth, spec=spec, kind=kind, id=id, label=label, ids=ids,
                    on_mismatch=on_mismatch, cluster=cluster)
    if prep.kind == "dimlevel" and not prep.classes:
        raise FineclassError("`truth` has no dimension: pass `spec=` with the label set, or truth with labels.",
                             "truth")
    stats, perdim = _stats_for(prep, 0)
    notes = prep.notes
    n = len(prep.keys)
    metrics = _metric_table(stats, n, resamples, conf, seed, prep.cluster, notes)
    if prep.kind == "single":
        tables = _tables_single(prep, stats.S)
    elif prep.kind == "multi":
        tables = _tables_multi(prep, stats.S)
    else:
        tables = _tables_dimlevel(prep, stats.S, perdim)
    if prep.cluster is not None:
        notes.append(f"intervals resample {int(prep.cluster.max()) + 1} clusters of documents.")
    return Evaluation(prep.kind, metrics, notes, n_empty_predictions=prep.n_empty[0], confidence=conf,
                      bootstrap=resamples, spec=prep.spec, **tables)


def paired_bootstrap(pred_a: Any, pred_b: Any, truth: Any, *, metric: str | Sequence[str] | None = None,
                     spec: Any = None, kind: str | None = None, id: str = "id", label: Any = None,
                     ids: Any = None, on_mismatch: str = "error", bootstrap: int = 1000,
                     confidence: float = 0.95, seed: int = 0, cluster: str | None = None) -> pa.Table:
    """The difference between two models (a - b) on the same documents, with a paired bootstrap.

    Both models are scored on the same resamples of the same documents. Returns a table with columns
    metric, a, b, difference, lower, upper, p_value, n. ``p_value`` is twice the smaller share of
    resampled differences on either side of zero (capped at 1): a bootstrap analogue of a two-sided
    p-value for "no difference". ``metric``: one name or a list; default every headline metric.
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=1)
    conf = _confidence_arg(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    prep = _prepare([pred_a, pred_b], truth, spec=spec, kind=kind, id=id, label=label, ids=ids,
                    on_mismatch=on_mismatch, cluster=cluster, pred_names=("pred_a", "pred_b"))
    sa, _ = _stats_for(prep, 0)
    sb, _ = _stats_for(prep, 1)
    known = [m for m, _, _ in sa.metrics]
    wanted = known if metric is None else ([metric] if isinstance(metric, str) else list(metric))
    bad = [m for m in wanted if m not in known]
    if bad:
        raise FineclassError(f"`metric`: {preview(bad)} are not metrics of a {prep.kind} evaluation; choose "
                             f"from {', '.join(known)}.", "metric")
    m = sa.S.shape[1]
    S = np.hstack([sa.S, sb.S])
    fa = {name: f for name, f, _ in sa.metrics}
    fns = [(lambda f: (lambda s, c: f(s[:, :m], c) - f(s[:, m:], c)))(fa[w]) for w in wanted]
    n = len(prep.keys)
    full = S.sum(0)[None, :]
    cnt = np.array([float(n)])
    boot = _resampled(S, fns, resamples, np.random.default_rng(seed), prep.cluster)
    rows = []
    for j, w in enumerate(wanted):
        a = _num(fa[w](full[:, :m], cnt)[0]); b = _num(fa[w](full[:, m:], cnt)[0])
        d = None if a is None or b is None else a - b
        lo, hi, _ = _percentile(boot[:, j], conf) if d is not None else (None, None, 0)
        ok = boot[np.isfinite(boot[:, j]), j]
        p = None
        if d is not None and ok.size:
            p = float(min(1.0, 2 * min((ok <= 0).mean(), (ok >= 0).mean())))
        if d is None:
            _warn(f"{w} is undefined for one of the models on these data; its difference is null.")
        rows.append({"metric": w, "a": a, "b": b, "difference": d, "lower": lo, "upper": hi, "p_value": p, "n": n})
    schema = pa.schema([("metric", pa.string()), ("a", pa.float64()), ("b", pa.float64()),
                        ("difference", pa.float64()), ("lower", pa.float64()), ("upper", pa.float64()),
                        ("p_value", pa.float64()), ("n", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


# ====================================================================== agreement
LEVELS_OF_MEASUREMENT = ("nominal", "ordinal", "interval", "ratio")


def _coded_matrix(table: Any, unit: str, coder: Any, value: str, argument: str = "table"):
    """(units, coders, {(unit, coder): value}) from a long table, or a wide one when ``coder`` is a list."""
    t = _read(table, argument)
    cols = t.column_names
    if unit not in cols:
        raise FineclassError(f"column `{unit}` not found in `{argument}`; columns are: {', '.join(cols)}. Pass "
                             f"`unit=` with the name of the column that identifies the coded items.", "unit")
    units_raw = t.column(unit).to_pylist()
    cells: dict = {}
    if isinstance(coder, (list, tuple)):  # wide: one column per coder
        for c in coder:
            if c not in cols:
                raise FineclassError(f"coder column `{c}` not found in `{argument}`; columns are: "
                                     f"{', '.join(cols)}.", "coder")
        coders = [str(c) for c in coder]
        rows = [(u, str(c), v) for c in coder for u, v in zip(units_raw, t.column(c).to_pylist())]
    else:
        for c, what in ((coder, "coder"), (value, "value")):
            if c not in cols:
                raise FineclassError(f"column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}. "
                                     f"Pass `{what}=` with its name (or `coder=` a list of coder columns for a "
                                     f"wide table).", what)
        rows = list(zip(units_raw, t.column(coder).to_pylist(), t.column(value).to_pylist()))
        coders = []
    units: list = []
    seen_u: set = set()
    seen_c = set(coders)
    for u, c, v in rows:
        if u is None or c is None:
            raise FineclassError(f"`{argument}` has rows without a unit or a coder.", argument)
        c = str(c)
        if c not in seen_c:
            seen_c.add(c); coders.append(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue  # missing value: the coder did not code this unit
        if u not in seen_u:
            seen_u.add(u); units.append(u)
        key = (u, c)
        if key in cells and cells[key] != v:
            raise FineclassError(f"coder {c!r} gave unit {u!r} two different values ({cells[key]!r} and {v!r}) in "
                                 f"`{argument}`; keep one value per coder and unit.", argument)
        cells[key] = v
    return units, coders, cells


def _value_codes(cells: dict, level: str, order: Sequence | None) -> tuple[dict, list]:
    """Map each value to a number: a category index (nominal), a rank (ordinal) or itself (interval, ratio)."""
    values = list(cells.values())
    if level in ("interval", "ratio"):
        try:
            return {k: float(v) for k, v in cells.items()}, sorted({float(v) for v in values})
        except (TypeError, ValueError):
            raise FineclassError(f"level={level!r} needs numeric values; found e.g. {values[0]!r}.", "level") from None
    canonical = {k: canon(v) for k, v in cells.items()}
    distinct = set(canonical.values())
    if order is not None:
        ordered = [canon(o) for o in order]
        missing = distinct - set(ordered)
        if missing:
            raise FineclassError(f"`order` lacks values found in the data: {preview(sorted(missing))}.", "order")
    elif level == "ordinal":
        try:
            ordered = sorted(distinct, key=float)
        except ValueError:
            if distinct <= set(DEFAULT_LEVELS):
                ordered = [x for x in DEFAULT_LEVELS]
            else:
                raise FineclassError(f"level='ordinal' needs `order=` (the values from lowest to highest) for "
                                     f"non-numeric values such as {preview(sorted(distinct), 4)}.", "order") from None
    else:
        ordered = _sorted_codes(distinct)
    rank = {v: i for i, v in enumerate(ordered)}
    return {k: float(rank[v]) for k, v in canonical.items()}, list(range(len(ordered)))


def _alpha(codes: dict, units: list, coders: list, level: str, domain: list) -> tuple[float | None, int]:
    import krippendorff
    M = np.full((len(coders), len(units)), np.nan)
    ui = {u: j for j, u in enumerate(units)}
    ci = {c: i for i, c in enumerate(coders)}
    for (u, c), v in codes.items():
        M[ci[c], ui[u]] = v
    pairable = int((np.isfinite(M).sum(0) >= 2).sum())
    if pairable == 0:
        _warn("Krippendorff's alpha is undefined: no unit was coded by two coders; it is reported as null.")
        return None, 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            a = krippendorff.alpha(reliability_data=M, level_of_measurement=level,
                                   value_domain=np.asarray(domain, dtype=float))
    except ValueError as e:  # e.g. one value only in the whole domain
        _warn(f"Krippendorff's alpha is undefined for these data ({e}); it is reported as null.")
        return None, pairable
    a = _num(a)
    if a is None:
        _warn("Krippendorff's alpha is undefined for these data (no disagreement is possible: the coders use a "
              "single value); it is reported as null.")
    return a, pairable


def _kappa_rows(codes: dict, units: list, coders: list, weights: str | None, pairs: list | None = None) -> list:
    from sklearn.metrics import cohen_kappa_score
    by_coder: dict = {c: {} for c in coders}
    for (u, c), v in codes.items():
        by_coder[c][u] = v
    name = "cohen_kappa" if weights is None else f"cohen_kappa_{weights}"
    rows = []
    pairs = pairs or [(a, b) for i, a in enumerate(coders) for b in coders[i + 1:]]
    for a, b in pairs:
        joint = [u for u in units if u in by_coder[a] and u in by_coder[b]]
        ya = [by_coder[a][u] for u in joint]
        yb = [by_coder[b][u] for u in joint]
        k = None
        if len(joint) >= 2 and len(set(ya) | set(yb)) >= 2:
            labels = sorted(set(ya) | set(yb))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = _num(cohen_kappa_score(ya, yb, labels=labels, weights=weights))
        if k is None:
            _warn(f"Cohen's kappa between {a!r} and {b!r} is undefined ({len(joint)} jointly coded units"
                  f"{', one value only' if len(joint) >= 2 else ''}); it is reported as null.")
        agree = float(np.mean(np.equal(ya, yb))) if joint else None
        rows.append({"statistic": name, "coder_a": a, "coder_b": b, "estimate": k, "n": len(joint)})
        rows.append({"statistic": "percent_agreement", "coder_a": a, "coder_b": b, "estimate": agree,
                     "n": len(joint)})
    return rows


_AGREEMENT_SCHEMA = pa.schema([("statistic", pa.string()), ("coder_a", pa.string()), ("coder_b", pa.string()),
                               ("estimate", pa.float64()), ("n", pa.int64())])


def _agreement_args(level: str, weights: str | None) -> None:
    if level not in LEVELS_OF_MEASUREMENT:
        raise FineclassError(f"`level` must be one of {', '.join(LEVELS_OF_MEASUREMENT)}; got {level!r}.", "level")
    if weights not in (None, "linear", "quadratic"):
        raise FineclassError(f"`weights` must be None, 'linear' or 'quadratic'; got {weights!r}.", "weights")
    if weights is not None and level == "nominal":
        raise FineclassError("weighted kappa needs ordered values: pass level='ordinal' (with `order=`) or leave "
                             "`weights` out.", "weights")


def agreement(table: Any, *, unit: str = "id", coder: Any = "coder", value: str = "label",
              level: str = "nominal", order: Sequence | None = None, weights: str | None = None) -> pa.Table:
    """Agreement among coders: Cohen's kappa and percent agreement per pair, Krippendorff's alpha overall.

    ``table``: long (one row per unit and coder: ``unit``, ``coder``, ``value``) or wide (``coder=`` a list
    of columns, one per coder). Missing values (null, or no row) mean the coder did not code the unit.
    ``level``: nominal, ordinal, interval or ratio (for alpha; kappa is unweighted unless ``weights=``
    'linear' or 'quadratic'). ``order``: the values from lowest to highest, for ordinal non-numeric values.
    Kappa uses the units both coders coded (scikit-learn's ``cohen_kappa_score``); alpha uses every
    pairable value (the ``krippendorff`` package). Undefined statistics are null, with a warning.

    Returns a table: statistic, coder_a, coder_b, estimate, n (jointly coded units; for alpha, the units
    coded by at least two coders).
    """
    _agreement_args(level, weights)
    units, coders, cells = _coded_matrix(table, unit, coder, value)
    if len(coders) < 2:
        raise FineclassError(f"agreement needs at least two coders; `table` has {len(coders)}.", "coder")
    codes, domain = _value_codes(cells, level, order)
    rows = _kappa_rows(codes, units, coders, weights)
    a, pairable = _alpha(codes, units, coders, level, domain)
    rows.append({"statistic": f"krippendorff_alpha_{level}", "coder_a": None, "coder_b": None, "estimate": a,
                 "n": pairable})
    return pa.Table.from_pylist(rows, schema=_AGREEMENT_SCHEMA)


def model_vs_coders(predictions: Any, coders: Any, *, unit: str = "id", coder: Any = "coder", value: str = "label",
                    id: str = "id", label: str | None = None, level: str = "nominal", order: Sequence | None = None,
                    weights: str | None = None, model_name: str = "model") -> pa.Table:
    """A model's agreement with each human coder, next to the coders' agreement with each other.

    ``predictions``: single-label predictions (``id`` and ``label``, as ``Classifier.predict`` returns them).
    ``coders``: the coders' codes (long or wide, as in :func:`agreement`). The model is scored on the units
    the coders coded. Rows: kappa and percent agreement of the model with each coder and between coders;
    the mean kappa of model-coder and coder-coder pairs (coder_b ``"(mean)"``); Krippendorff's alpha among
    the coders (coder_a ``"coders"``) and with the model as one more coder (``"coders+model"``).
    """
    _agreement_args(level, weights)
    units, names, cells = _coded_matrix(coders, unit, coder, value, "coders")
    if model_name in names:
        raise FineclassError(f"a coder is already called {model_name!r}; pass another `model_name=`.", "model_name")
    ptab = _read(predictions, "predictions")
    lay = _layout(ptab, "predictions", label, "single")
    pc_ = _read_coded(ptab, "predictions", lay, "single", id, None, "predictions")
    if pc_.conflicts:
        _warn(f"`predictions` gives different labels for the same document {pc_.conflicts} times; the first row "
              f"(or the most confident) was kept.")
    ukey = {canon(u): u for u in units}
    covered = [k for k in ukey if k in pc_.values and pc_.values[k] is not None]
    if not covered:
        raise FineclassError(f"no unit of `coders` has a prediction: check that `{unit}` in `coders` and `{id}` "
                             f"in `predictions` hold the same ids.", "predictions")
    if len(covered) < len(ukey):
        _warn(f"{len(ukey) - len(covered)} of {len(ukey)} coded units have no prediction; the model is compared on "
              f"the other {len(covered)}.")
    all_cells = dict(cells)
    for k in covered:
        all_cells[(ukey[k], model_name)] = pc_.values[k]
    everyone = names + [model_name]
    codes, domain = _value_codes(all_cells, level, order)
    model_pairs = [(model_name, c) for c in names]
    coder_pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    rows = _kappa_rows(codes, units, everyone, weights, model_pairs + coder_pairs) if coder_pairs else \
        _kappa_rows(codes, units, everyone, weights, model_pairs)
    kname = "cohen_kappa" if weights is None else f"cohen_kappa_{weights}"

    def mean_of(pairs):
        vals = [r["estimate"] for r in rows if r["statistic"] == kname and (r["coder_a"], r["coder_b"]) in pairs
                and r["estimate"] is not None]
        return (float(np.mean(vals)) if vals else None), len(vals)

    mm, nm = mean_of(set(model_pairs))
    rows.append({"statistic": f"{kname}_mean", "coder_a": model_name, "coder_b": "(mean)", "estimate": mm, "n": nm})
    if coder_pairs:
        cm, ncp = mean_of(set(coder_pairs))
        rows.append({"statistic": f"{kname}_mean", "coder_a": "coders", "coder_b": "(mean)", "estimate": cm,
                     "n": ncp})
        coder_codes = {k: v for k, v in codes.items() if k[1] != model_name}
        a, pairable = _alpha(coder_codes, units, names, level, domain)
        rows.append({"statistic": f"krippendorff_alpha_{level}", "coder_a": "coders", "coder_b": None,
                     "estimate": a, "n": pairable})
    a, pairable = _alpha(codes, units, everyone, level, domain)
    rows.append({"statistic": f"krippendorff_alpha_{level}", "coder_a": f"coders+{model_name}", "coder_b": None,
                 "estimate": a, "n": pairable})
    return pa.Table.from_pylist(rows, schema=_AGREEMENT_SCHEMA)


# ====================================================================== shares by group
def label_shares(predictions: Any, groups: Any = None, by: Any = (), *, id: str = "id", label: Any = None,
                 kind: str | None = None, spec: Any = None, on_mismatch: str = "error", bootstrap: int = 1000,
                 confidence: float = 0.95, seed: int = 0, cluster: str | None = None) -> pa.Table:
    """The share of documents carrying each label, by group, with percentile bootstrap intervals.

    ``predictions``: single, multi or dimlevel predictions (document-level or long). ``groups``: a table
    with ``id`` and the ``by`` columns (e.g. party, year); without it the ``by`` columns are read from
    ``predictions``. The documents counted are those of ``groups`` (a document without rows in a long
    ``predictions`` table carries no label). For dimlevel the label is the dimension (present at any level).
    Documents are resampled within each group (clusters, when ``cluster`` names a column of ``groups``).
    Returns: the ``by`` columns, label, documents (in the group), n (carrying the label), share, lower, upper.
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=0)
    conf = _confidence_arg(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    by = [by] if isinstance(by, str) else [str(b) for b in (by or [])]
    spec = as_spec(spec)
    if spec is not None:
        kind = spec.kind
    ptab = _read(predictions, "predictions")
    gtab = ptab if groups is None else _read(groups, "groups")
    gname = "predictions" if groups is None else "groups"
    for b in by + ([cluster] if cluster else []):
        if b not in gtab.column_names:
            raise FineclassError(f"column `{b}` not found in `{gname}`; columns are: {', '.join(gtab.column_names)}.",
                                 "by" if b != cluster else "cluster")
    if id not in gtab.column_names:
        raise FineclassError(f"column `{id}` not found in `{gname}`; pass `id=` with the id column.", "id")
    gkeys = _key_array(gtab.column(id)).to_pylist()
    gvals = {b: gtab.column(b).to_pylist() for b in by}
    cvals = gtab.column(cluster).to_pylist() if cluster else None
    doc_group: dict = {}
    doc_cluster: dict = {}
    for r, k in enumerate(gkeys):
        g = tuple(gvals[b][r] for b in by)
        if k in doc_group and doc_group[k] != g:
            raise FineclassError(f"document {k!r} belongs to two groups in `{gname}` ({doc_group[k]} and {g}).", "by")
        doc_group[k] = g
        if cluster:
            doc_cluster[k] = cvals[r]
    lay = _layout(ptab, "predictions", label, kind)
    if lay.kind is None:
        dup = pc.count_distinct(_key_array(ptab.column(id))).as_py() < ptab.num_rows
        lay = _Layout("multi" if dup else "single", "long" if dup else "document", lay.columns)
    kind = lay.kind
    coded = _read_coded(ptab, "predictions", lay, kind, id, set(doc_group), "predictions")
    if coded.conflicts:
        _warn(f"`predictions` gives different labels for the same document {coded.conflicts} times; the most "
              f"confident (else the first) row was kept.")
    keys = list(doc_group)
    absent = [k for k in keys if k not in coded.values]
    if absent and (kind == "single" or lay.fmt == "document"):
        msg = f"{len(absent)} documents of `{gname}` have no prediction (ids: {preview(absent)})."
        if on_mismatch != "intersect":
            raise FineclassError(msg + " Pass on_mismatch='intersect' to count only the documents with one.",
                                 "predictions")
        keys = [k for k in keys if k in coded.values]
    if kind == "single":
        sets = [set() if coded.values.get(k) is None else {coded.values[k]} for k in keys]
    elif kind == "multi":
        sets = [coded.values.get(k, set()) for k in keys]
    else:
        sets = [set(coded.values.get(k, {})) for k in keys]
    labels = list(spec.classes) if spec is not None else _sorted_codes(set().union(*sets) if sets else set())
    if spec is not None:
        extra = _sorted_codes(set().union(*sets) - set(labels))
        if extra:
            _warn(f"`predictions` holds labels outside `spec`: {preview(extra)}; they get rows of their own.")
            labels += extra
    li = {c: j for j, c in enumerate(labels)}
    X = np.zeros((len(keys), len(labels)))
    for i, s in enumerate(sets):
        for c in s:
            X[i, li[c]] = 1
    group_of = [doc_group[k] for k in keys]
    order: dict = {}
    for g in group_of:
        order.setdefault(g, len(order))
    try:
        gs = sorted(order, key=lambda g: tuple((x is None, x) for x in g))
    except TypeError:
        gs = list(order)
    gidx = np.array([gs.index(g) for g in group_of]) if gs else np.array([], dtype=int)
    seqs = np.random.SeedSequence(seed).spawn(max(len(gs), 1))
    out = {b: [] for b in by}
    out.update({"label": [], "documents": [], "n": [], "share": [], "lower": [], "upper": []})
    fns = [(lambda j: (lambda s, c: s[:, j] / c))(j) for j in range(len(labels))]
    for gi, g in enumerate(gs):
        rows = np.flatnonzero(gidx == gi)
        Xg = X[rows]
        ng = len(rows)
        boot = None
        if resamples and ng:
            cl = None
            if cluster:
                _, cl = np.unique(np.array([str(doc_cluster[keys[r]]) for r in rows], dtype=object),
                                  return_inverse=True)
            boot = _resampled(Xg, fns, resamples, np.random.default_rng(seqs[gi]), cl)
        for j, lab in enumerate(labels):
            for b, x in zip(by, g):
                out[b].append(x)
            out["label"].append(lab)
            out["documents"].append(ng)
            out["n"].append(int(Xg[:, j].sum()))
            out["share"].append(_num(Xg[:, j].mean()) if ng else None)
            lo = hi = None
            if boot is not None:
                lo, hi, _ = _percentile(boot[:, j], conf)
            out["lower"].append(lo); out["upper"].append(hi)
    cols = {b: pa.array(out[b]) if out[b] else pa.array([], gtab.schema.field(b).type) for b in by}
    cols["label"] = pa.array(out["label"], pa.string())
    cols["documents"] = pa.array(out["documents"], pa.int64())
    cols["n"] = pa.array(out["n"], pa.int64())
    for c in ("share", "lower", "upper"):
        cols[c] = pa.array(out[c], pa.float64())
    return pa.table(cols)


# ====================================================================== learning-curve arithmetic
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
        n = np.asarray(sizes, dtype=float)
        return self.a - self.b * n ** (-self.c)

    def to_dict(self) -> dict:
        return {"model": "a - b * n^(-c)", "a": self.a, "b": self.b, "c": self.c, "rmse": self.rmse,
                "sizes": self.sizes.tolist(), "scores": self.scores.tolist(), "resamples": int(len(self.boot)),
                "notes": list(self.notes)}

    def __repr__(self) -> str:
        return (f"CurveFit(score = {self.a:.4g} - {self.b:.4g} * n^(-{self.c:.3g}); rmse {self.rmse:.3g}; "
                f"{len(np.unique(self.sizes))} sizes, {len(self.sizes)} runs)")


_C_GRID = np.geomspace(0.02, 3.0, 300)


def _profile_fit(n: np.ndarray, Y: np.ndarray, grid: np.ndarray = _C_GRID):
    """Best (a, b, c) for each row of Y (R, N): for fixed c the model is linear in (a, b)."""
    X = n[None, :] ** (-grid[:, None])                      # (G, N)
    xm = X.mean(1, keepdims=True)
    Xc = X - xm
    sxx = (Xc ** 2).sum(1)                                   # (G,)
    ym = Y.mean(1, keepdims=True)
    Yc = Y - ym                                              # (R, N)
    sxy = Yc @ Xc.T                                          # (R, G)
    slope = sxy / sxx[None, :]
    sse = (Yc ** 2).sum(1)[:, None] - slope * sxy            # (R, G)
    best = np.argmin(sse, axis=1)
    r = np.arange(Y.shape[0])
    s = slope[r, best]
    a = ym[:, 0] - s * xm[best, 0]
    return a, -s, grid[best], sse[r, best]


def fit_curve(sizes: Any, scores: Any, *, resamples: int = 200, seed: int = 0) -> CurveFit:
    """Fit ``score = a - b * n^(-c)`` to learning-curve runs (one row per size and seed).

    ``sizes`` and ``scores`` are equal-length vectors (repeat a size once per seed). The uncertainty comes
    from the spread of the runs around the curve (seed to seed, and lack of fit): a residual bootstrap adds
    resampled residuals to the fitted curve and refits it ``resamples`` times.
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
        raise FineclassError(f"a learning curve needs at least three different training sizes; got "
                             f"{distinct.size}.", "sizes")
    resamples = whole_number(resamples, "resamples", minimum=0)
    a, b, c, sse = _profile_fit(n, y[None, :])
    notes = []
    if c[0] in (_C_GRID[0], _C_GRID[-1]):
        notes.append(f"the exponent sits at the edge of its range ({c[0]:.3g}); the curve's shape is poorly "
                     f"determined by these sizes.")
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
    """Training size at which the curve reaches ``target``; NaN where it never does, or where the curve moves
    the wrong way (a score that falls with more labels never "reaches" a higher target)."""
    a, b, c = np.asarray(a, dtype=float), np.asarray(b, dtype=float), np.asarray(c, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = (a - target) / b
        right_way = b > 0 if higher_is_better else b < 0
        return np.where((ratio > 0) & right_way, ratio ** (-1.0 / c), np.nan)


def labels_needed(fit: CurveFit, target: float, *, confidence: float = 0.95, far: float = 2.0,
                  higher_is_better: bool = True) -> pa.Table:
    """How many labelled documents the fitted curve needs to reach ``target``, with an interval.

    Returns one row: target, labels (null when the curve's asymptote does not reach the target, or when the
    curve does not improve with more labels), lower, upper (null when more than half the tail of resampled
    curves never reaches it), largest_size, extrapolation (labels / largest size trained), reachable_share
    (of the resampled curves). Warns when the answer lies more than ``far`` times beyond the largest size
    trained. ``higher_is_better=False`` for losses and error rates, which must fall to the target.
    """
    if not isinstance(fit, CurveFit):
        raise FineclassError("`fit` must be the result of fit_curve().", "fit")
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise FineclassError(f"`target` must be a number; got {target!r}.", "target") from None
    conf = _confidence_arg(confidence)
    largest = float(fit.sizes.max())
    better = bool(higher_is_better)
    est = _num(_invert(fit.a, fit.b, fit.c, target, better))
    if est is None and (fit.b > 0) != better:
        _warn(f"the fitted curve does not {'rise' if better else 'fall'} with more labels (these runs score "
              f"{'no better' if better else 'no lower'} at larger sizes), so it cannot say how many labels reach "
              f"{target:g}; labels needed is null. Check the training settings, or train at larger sizes.")
    elif est is None:
        _warn(f"the fitted curve levels off at {fit.a:.4g} and never reaches {target:g}; labels needed is null.")
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
            lo = _num(lo_); hi = _num(hi_)
    ext = None if est is None else est / largest
    if ext is not None and ext > far:
        _warn(f"reaching {target:g} needs about {est:,.0f} labels, {ext:.1f} times the largest training size "
              f"({largest:,.0f}): the curve is extrapolated far beyond the data and may be wrong.")
    return pa.table({"target": [target], "labels": pa.array([est], pa.float64()),
                     "lower": pa.array([lo], pa.float64()), "upper": pa.array([hi], pa.float64()),
                     "largest_size": [largest], "extrapolation": pa.array([ext], pa.float64()),
                     "reachable_share": pa.array([share], pa.float64())})


# ====================================================================== command line
def add_cli(subparsers) -> None:
    """Register ``fineclass evaluate PREDICTIONS TRUTH``."""
    p = subparsers.add_parser("evaluate", help="score predictions against human codes",
                              description="Score predictions against human codes and print the metrics with "
                                          "bootstrap intervals.")
    p.add_argument("predictions", help="predictions: a Parquet/CSV file, glob or folder")
    p.add_argument("truth", help="human codes: a Parquet/CSV file, glob or folder")
    p.add_argument("--kind", choices=KINDS, help="label shape (default: inferred)")
    p.add_argument("--spec", help="a label spec JSON file (or a saved model folder)")
    p.add_argument("--id", default="id", help="id column (default: id)")
    p.add_argument("--label", help="label column, or DIMENSION,LEVEL columns")
    p.add_argument("--ids-from", dest="ids_from", help="a table whose id column lists the documents to score")
    p.add_argument("--split", help="keep only rows of TRUTH (and --ids-from) whose `split` column equals this")
    p.add_argument("--on-mismatch", dest="on_mismatch", choices=("error", "intersect"), default="error")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals (0: none)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cluster", help="a column of TRUTH with each document's cluster")
    p.add_argument("--output", help="write the result: .csv (the metrics table) or .json (every table)")
    p.set_defaults(func=_cli_evaluate)


def _split_filter(t: pa.Table, split: str | None, argument: str) -> pa.Table:
    if split is None:
        return t
    if "split" not in t.column_names:
        raise FineclassError(f"--split needs a `split` column in {argument}; columns are: "
                             f"{', '.join(t.column_names)}.", "split")
    out = t.filter(pc.equal(t.column("split").cast(pa.string()), split))
    if out.num_rows == 0:
        raise FineclassError(f"no row of {argument} has split == {split!r}.", "split")
    return out


def _cli_evaluate(args) -> int:
    truth = _split_filter(_read(args.truth, "truth"), args.split, "TRUTH")
    ids = None
    if args.ids_from:
        it = _read(args.ids_from, "ids")
        if "split" in it.column_names:
            it = _split_filter(it, args.split, "--ids-from")
        ids = it
    label = args.label.split(",") if args.label and "," in args.label else args.label
    with warnings.catch_warnings():  # what the warnings say is printed with the notes
        warnings.simplefilter("ignore", EvaluationWarning)
        ev = evaluate(args.predictions, truth, spec=args.spec, kind=args.kind, id=args.id, label=label, ids=ids,
                      on_mismatch=args.on_mismatch, bootstrap=args.bootstrap, confidence=args.confidence,
                      seed=args.seed, cluster=args.cluster)
    print(repr(ev))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            payload = {name: t.to_pylist() for name, t in ev.to_dict().items()}
            out.write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
        elif out.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv
            pcsv.write_csv(ev.metrics, str(out))
        else:
            raise FineclassError(f"--output must end in .csv or .json; got {str(out)!r}.", "output")
        print(f"written to {out}")
    return 0
