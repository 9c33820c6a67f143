"""Reading coded tables: document-level or long, single, multi-label or dimension->level, into values per document."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FineclassError
from ..labels import canon, is_missing
from .common import read


def key_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Ids as canonical strings, so that 7, 7.0 and "7" match across tables.

    Args:
        col: an id column.

    Returns:
        A string array.
    """
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


def id_array(table: pa.Table, id: str, argument: str) -> pa.Array:
    """A table's id column as canonical strings (see :func:`key_array`), checked for presence and missing values.

    Args:
        table: the table.
        id: the name of its id column.
        argument: the table's argument name, for errors.

    Returns:
        One key per row.

    Raises:
        FineclassError: naming ``id`` when the column is missing, or ``argument`` when it has missing values.
    """
    if id not in table.column_names:
        raise FineclassError(
            f"column `{id}` not found in `{argument}`; columns are: "
            f"{', '.join(table.column_names)}. Pass `id=` with the name of the id column.",
            "id",
        )
    col = table.column(id)
    if col.null_count:
        raise FineclassError(
            f"`{argument}`: the id column `{id}` holds {col.null_count} missing values; every row needs an id.",
            argument,
        )
    return key_array(col)


def _float_or_nan(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


@dataclass
class Layout:
    """Where a table keeps its labels: its shape, its form (document-level or long) and its label columns."""

    kind: str | None  # single | multi | dimlevel | None ("scalar": single or long multi)
    fmt: str  # "document" (one row per document) or "long"
    columns: tuple  # (label,) or (dimension, level)


def layout(table: pa.Table, argument: str, label: Any, kind: str | None) -> Layout:
    """Where a table keeps its labels, and in which shape.

    Args:
        table: predictions or truth.
        argument: its argument's name, for errors.
        label: the label column, a (dimension, level) pair, or None (``label``/``labels``, or ``dimension`` and
            ``level``, are looked for).
        kind: the expected shape, or None.

    Returns:
        A :class:`Layout` (kind None: a scalar column that may be single- or long multi-label).

    Raises:
        FineclassError: naming ``label`` or ``kind`` when the columns are missing or do not fit the shape.
    """
    cols = table.column_names

    def need(c: str) -> None:
        if c not in cols:
            raise FineclassError(
                f"column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}. "
                f"Pass `label=` with the name of the label column (or a pair: the dimension "
                f"and level columns).",
                "label",
            )

    if label is not None and not isinstance(label, str):
        pair = [str(x) for x in label]
        if len(pair) != 2:
            raise FineclassError(
                f"`label` must be one column name or a pair (dimension, level); got {label!r}.", "label"
            )
        need(pair[0])
        need(pair[1])
        if kind not in (None, "dimlevel"):
            raise FineclassError(
                f"`label` names a (dimension, level) pair, which is the dimlevel shape, but `kind` is {kind!r}.", "kind"
            )
        return Layout("dimlevel", "long", tuple(pair))
    if label is None:
        if kind in (None, "dimlevel") and "dimension" in cols and "level" in cols:
            return Layout("dimlevel", "long", ("dimension", "level"))
        listy = [c for c in ("labels", "label") if c in cols and _is_list(table.schema.field(c).type)]
        scalar = [c for c in ("label", "labels") if c in cols and c not in listy]
        order = (scalar + listy) if kind == "single" else (listy + scalar)
        if not order and "dimension" in cols and "level" in cols:
            raise FineclassError(
                f"`{argument}` has `dimension` and `level` columns, the dimlevel shape, but `kind` "
                f"is {kind!r}. Leave `kind` out or pass kind='dimlevel'.",
                "kind",
            )
        if not order:
            raise FineclassError(
                f"`{argument}` has no label column: looked for `label`, `labels`, or `dimension` and `level`; "
                f"columns are: {', '.join(cols)}. Pass `label=` with the name of the label column.",
                "label",
            )
        label = order[0]
    need(label)
    t = table.schema.field(label).type
    if _is_list(t):
        inner = t.value_type
        if pa.types.is_struct(inner):
            names = [inner.field(i).name for i in range(inner.num_fields)]
            if "dimension" not in names or "level" not in names:
                raise FineclassError(
                    f"the list column `{label}` of `{argument}` holds records without "
                    f"`dimension` and `level` fields ({', '.join(names)}).",
                    argument,
                )
            found = "dimlevel"
        else:
            found = "multi"
        if kind not in (None, found):
            raise FineclassError(
                f"`kind` is {kind!r}, but column `{label}` of `{argument}` holds lists, which "
                f"is the {found} shape. Pass kind={found!r} or another column.",
                "kind",
            )
        return Layout(found, "document", (label,))
    if kind == "dimlevel":
        raise FineclassError(
            f"kind='dimlevel' needs a dimension and a level column in `{argument}`; pass "
            f'`label=("dimension", "level")` with their names.',
            "label",
        )
    if kind == "multi":
        return Layout("multi", "long", (label,))
    if kind == "single":
        return Layout("single", "document", (label,))
    return Layout(None, "document", (label,))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


@dataclass
class Coded:
    """One table's labels per document: ``values[key]`` is a code, a set of codes, or {dimension: level}."""

    values: dict
    original: dict  # key -> the id as the user wrote it
    keys: list  # keys in first-seen order
    outside: list  # keys of this table that are not in the scored set
    conflicts: int = 0  # duplicated cells with different values (resolved by the rule)
    conflict_examples: list = field(default_factory=list)
    null_labels: int = 0


def read_coded(
    table: pa.Table, argument: str, layout: Layout, kind: str, id: str, scored: set | None, role: str
) -> Coded:
    """Fold a table into values per document.

    Args:
        table: predictions or truth.
        argument: its argument's name, for errors.
        layout: from :func:`layout`.
        kind: the shape.
        id: the id column.
        scored: the keys of the documents scored (rows of others are set aside), or None for all.
        role: ``"truth"`` (two different values for one cell raise) or ``"predictions"`` (the most confident
            row, else the first, wins; the conflicts are counted).

    Returns:
        A :class:`Coded`.

    Raises:
        FineclassError: naming ``id`` or ``argument`` for a missing id column, missing ids, or conflicts in truth.
    """
    keys = id_array(table, id, argument)
    outside: list = []
    if scored is not None:
        value_set = pa.array(sorted(scored), pa.string())
        uniq = pc.unique(keys)
        outside = pc.filter(uniq, pc.invert(pc.is_in(uniq, value_set=value_set))).to_pylist()
        mask = pc.is_in(keys, value_set=value_set)
        if outside:  # the ids as the user wrote them, for messages
            seen_out: dict = {}
            for k, o in zip(
                pc.filter(keys, pc.invert(mask)).to_pylist(), pc.filter(table.column(id), pc.invert(mask)).to_pylist()
            ):
                seen_out.setdefault(k, o)
            outside = [seen_out[k] for k in outside]
        table = table.filter(mask)
        keys = pc.filter(keys, mask)
    key_list = keys.to_pylist()
    orig = table.column(id).to_pylist()
    conf = None
    if "confidence" in table.column_names and (layout.fmt == "long" or kind == "single"):
        conf = [_float_or_nan(v) for v in table.column("confidence").to_pylist()]
    out = Coded(values={}, original={}, keys=[], outside=outside)
    for k, o in zip(key_list, orig):
        if k not in out.original:
            out.original[k] = o
            out.keys.append(k)

    def conflict(where: str, old: Any, new: Any) -> None:
        if role == "truth":
            raise FineclassError(
                f"`{argument}` gives two different labels for {where} ({old!r} and {new!r}); keep one row per cell.",
                argument,
            )
        out.conflicts += 1
        if len(out.conflict_examples) < 5:
            out.conflict_examples.append(where)

    def better(new_c: float, old_c: float) -> bool:  # the highest confidence wins; ties keep the first row
        return (not math.isnan(new_c)) and (math.isnan(old_c) or new_c > old_c)

    if kind == "single":
        col = table.column(layout.columns[0]).to_pylist()
        best_conf: dict = {}
        for r, (k, v) in enumerate(zip(key_list, col)):
            code = None if is_missing(v) else canon(v)
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
                codes = {canon(x) for x in (v or []) if not is_missing(x)}
                if k in out.values and out.values[k] != codes:
                    conflict(f"document {out.original[k]!r}", sorted(out.values[k]), sorted(codes))
                    continue  # document-level duplicates: the first row wins
                out.values.setdefault(k, codes)
            else:
                s = out.values.setdefault(k, set())
                if not is_missing(v):
                    s.add(canon(v))
        return out
    # dimlevel
    best: dict = {}
    if layout.fmt == "long":
        dims = table.column(layout.columns[0]).to_pylist()
        levels = table.column(layout.columns[1]).to_pylist()
        rows = (
            (k, d, lv, conf[r] if conf else float("nan")) for r, (k, d, lv) in enumerate(zip(key_list, dims, levels))
        )
    else:
        lists = table.column(layout.columns[0]).to_pylist()
        for k in key_list:  # a document-level row with an empty list is a document without labels
            out.values.setdefault(k, {})
        rows = (
            (k, e.get("dimension"), e.get("level"), _float_or_nan(e.get("confidence")))
            for k, lst in zip(key_list, lists)
            for e in (lst or [])
            if e is not None
        )
    for k, d, lv, c in rows:
        m = out.values.setdefault(k, {})
        if is_missing(d):
            continue
        d = canon(d)
        lv = None if is_missing(lv) else canon(lv)
        if d in m:
            if m[d] != lv:
                conflict(f"document {out.original[k]!r}, dimension {d!r}", m[d], lv)
                if better(c, best[(k, d)]):
                    m[d], best[(k, d)] = lv, c
            continue
        m[d], best[(k, d)] = lv, c
    return out


def scored_ids(ids: Any, id: str) -> tuple[list, dict]:
    """The ``ids=`` argument as keys, in the given order.

    Args:
        ids: a list, array or Series of ids, or a table with an ``id`` column.
        id: the id column's name.

    Returns:
        ``(keys, original)``: the canonical keys, and ``{key: the id as given}``.

    Raises:
        FineclassError: naming ``ids`` when it is empty, holds missing values or has no ``id`` column.
    """
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        values = ids.to_pylist()
    elif isinstance(ids, np.ndarray) or type(ids).__name__ == "Series":
        values = list(ids.tolist())
    elif isinstance(ids, (list, tuple, set, frozenset)):
        values = list(ids)
    else:
        t = read(ids, "ids")
        if id not in t.column_names:
            raise FineclassError(
                f"`ids` has no column `{id}`; columns are: {', '.join(t.column_names)}. Pass a "
                f"list of ids or a table with an `{id}` column.",
                "ids",
            )
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


def sorted_codes(codes: set) -> list:
    """Class codes in a natural order: numerically when all are whole numbers, else alphabetically.

    Args:
        codes: the codes (None is left out).

    Returns:
        A sorted list.
    """
    codes = [c for c in codes if c is not None]
    try:
        return sorted(codes, key=int)
    except ValueError:
        return sorted(codes)
