"""Reading the inputs of :func:`fineclass.estimate`: coded tables, the corpus and the human sample.

Coded tables come in the shapes fineclass writes and reads elsewhere:

- document level, one row per document: ``id, label`` (single-label), ``id, labels`` with a list of labels
  (multi-label) or a list of ``{dimension, level[, confidence]}`` records (dimension->level);
- long, one row per label: ``id, label`` with an id on several rows, or ``id, dimension, level``.

For estimation a document's codes are the set of labels it carries (for dimension->level, the dimensions
present at any level), plus the model's confidence in each when the table has one. A long table cannot list
a document without labels, so which documents exist comes from a document-level table (``data``, the codes
themselves, ``sample``, or the human codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FineclassError, preview
from ..evaluation.coded import id_array, key_array
from ..labels import canon
from ..tables import read_table


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def unique_keys(keys: list[str], argument: str, what: str = "one row per document") -> None:
    """Check that no id is on two rows.

    Args:
        keys: the ids of a table's rows.
        argument: the table's argument name, for the error.
        what: what the table must hold, said in the error.

    Raises:
        FineclassError: naming the repeated ids.
    """
    if len(set(keys)) != len(keys):
        seen, dup = set(), []
        for k in keys:
            if k in seen and k not in dup:
                dup.append(k)
            seen.add(k)
        raise FineclassError(
            f"`{argument}` has {len(dup)} ids on more than one row (ids: {preview(dup)}); it needs {what}.", argument
        )


@dataclass
class Coded:
    """One table's codes: ``sets[key]`` is the set of labels of a document; ``fmt`` is document or long."""

    fmt: str
    keys: list[str]  # the documents with a row, in first-seen order
    sets: dict
    confidence: dict = field(default_factory=dict)  # (key, label) -> the model's confidence
    table: pa.Table | None = None


def read_coded(data: Any, argument: str, *, id: str, label: Any) -> Coded:
    """Fold a coded table (any of the shapes in the module's docstring) into label sets per document.

    Args:
        data: the table, or the path of a Parquet/CSV file.
        argument: its argument name, for errors.
        id: the name of its id column.
        label: the label column, a (dimension, level) pair, or None to find it.

    Returns:
        The codes per document.

    Raises:
        FineclassError: the table is missing, has no label column, or repeats an id in document form.
    """
    if data is None:
        raise FineclassError(f"`{argument}` is missing: pass a table or the path of a Parquet/CSV file.", argument)
    table = read_table(data, argument)
    keys = id_array(table, id, argument).to_pylist()
    cols = table.column_names

    def need(c: str) -> None:
        if c not in cols:
            raise FineclassError(
                f"column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}. Pass "
                f"`label=` with the name of the label column (or the pair: dimension and level "
                f"columns).",
                "label",
            )

    conf_col = "confidence" if "confidence" in cols else None
    if label is not None and not isinstance(label, str):
        pair = [str(x) for x in label]
        if len(pair) != 2:
            raise FineclassError(
                f"`label` must be one column name or a pair (dimension, level); got {label!r}.", "label"
            )
        need(pair[0])
        name, fmt, shape = pair[0], "long", "scalar"
    elif label is None and "dimension" in cols and not ({"label", "labels"} & set(cols)):
        name, fmt, shape = "dimension", "long", "scalar"
    else:
        name = label or next((c for c in ("labels", "label") if c in cols), None)
        if name is None:
            raise FineclassError(
                f"`{argument}` has no label column: looked for `label`, `labels`, or `dimension`; "
                f"columns are: {', '.join(cols)}. Pass `label=` with its name.",
                "label",
            )
        need(name)
        typ = table.schema.field(name).type
        if _is_list(typ):
            fmt, shape = "document", ("record" if pa.types.is_struct(typ.value_type) else "list")
            if shape == "record" and "dimension" not in [
                typ.value_type.field(i).name for i in range(typ.value_type.num_fields)
            ]:
                raise FineclassError(
                    f"the list column `{name}` of `{argument}` holds records without a `dimension` field.", argument
                )
        else:
            fmt, shape = ("document" if len(set(keys)) == len(keys) else "long"), "scalar"
    if fmt == "document":
        unique_keys(keys, argument)
    col = table.column(name)
    if shape == "scalar" and pa.types.is_floating(col.type):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
    values = key_array(col).to_pylist() if shape == "scalar" else col.to_pylist()
    confs = table.column(conf_col).to_pylist() if conf_col else None
    seen_as: dict = {}
    out = Coded(fmt, [], {}, {}, table)
    for r, (k, v) in enumerate(zip(keys, values)):
        s = out.sets.get(k)
        if s is None:
            s = out.sets[k] = set()
            out.keys.append(k)
        if shape == "scalar":
            if v is None:
                continue
            s.add(v)
            items = [(v, confs[r])] if confs else ()
        else:
            if shape == "list":
                items = [(x, None) for x in (v or []) if x is not None]
            else:
                items = [
                    (e.get("dimension"), e.get("confidence")) for e in (v or []) if e and e.get("dimension") is not None
                ]
            items = [(seen_as[x] if x in seen_as else seen_as.setdefault(x, canon(x)), c) for x, c in items]
            s.update(x for x, _ in items)
        for lab, c in items:
            if c is None:
                continue
            c = _float(c)
            if not math.isnan(c):
                prev = out.confidence.get((k, lab))
                out.confidence[(k, lab)] = c if prev is None else max(prev, c)
    return out


def natural_sort(values) -> list:
    """Sort strings with numbers first, in numeric order (2 before 10), then the rest alphabetically.

    Args:
        values: strings.

    Returns:
        The sorted list.
    """

    def key(s: str):
        try:
            return (0, float(s), s)
        except ValueError:
            return (1, 0.0, s)

    return sorted(values, key=key)


def indicator(sets: dict, keys: list[str], labels: list[str]) -> np.ndarray:
    """The 0/1 matrix of which document carries which label.

    Args:
        sets: label sets per key.
        keys: the documents (rows).
        labels: the labels (columns).

    Returns:
        (len(keys), len(labels)) matrix of 0/1.
    """
    index = {lab: j for j, lab in enumerate(labels)}
    out = np.zeros((len(keys), len(labels)))
    for i, k in enumerate(keys):
        for lab in sets.get(k, ()):
            j = index.get(lab)
            if j is not None:
                out[i, j] = 1.0
    return out


def confidence_matrix(coded: Coded, keys: list[str], labels: list[str]) -> np.ndarray | None:
    """The model's confidence per document and label.

    Args:
        coded: the codes, with their confidences.
        keys: the documents (rows).
        labels: the labels (columns).

    Returns:
        (len(keys), len(labels)) confidences, NaN where unknown; None when the table has none.
    """
    if not coded.confidence:
        return None
    index = {lab: j for j, lab in enumerate(labels)}
    pos = {k: i for i, k in enumerate(keys)}
    out = np.full((len(keys), len(labels)), np.nan)
    for (k, lab), c in coded.confidence.items():
        i, j = pos.get(k), index.get(lab)
        if i is not None and j is not None:
            out[i, j] = c
    return out


def numeric_column(table: pa.Table, name: str, source: str, rows: np.ndarray, argument: str) -> np.ndarray:
    """A numeric column of ``table`` (named ``source`` in messages) at ``rows`` as floats.

    Booleans become 0/1; text or gaps are errors naming ``argument``.

    Args:
        table: the table.
        name: the column.
        source: the table's name in messages.
        rows: the rows to take.
        argument: the argument named by errors.

    Returns:
        The values as floats.

    Raises:
        FineclassError: the column is not numeric or has gaps among ``rows``.
    """
    col = table.column(name)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise FineclassError(
            f"column `{name}` of `{source}` holds {t} values; a regression variable must be "
            f"numeric (0/1 for a category: make one column per category).",
            argument,
        )
    x = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)[rows]
    if np.isnan(x).any():
        raise FineclassError(
            f"column `{name}` of `{source}` has {int(np.isnan(x).sum())} missing values among the "
            f"documents; fill them in or drop those documents.",
            argument,
        )
    return x
