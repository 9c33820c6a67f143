"""Training sets: a table of documents with their labels, read and encoded under a LabelSpec."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FineclassError, preview
from .labels import LabelSpec, canon, is_missing, read_codebook, split_codebook
from .tables import ID, check_column, check_text, read_table, with_id


@dataclass
class Labelled:
    """A training table: ids, texts and encoded targets under a LabelSpec."""

    ids: list
    texts: list[str]
    targets: np.ndarray
    spec: LabelSpec
    id_type: pa.DataType

    def __len__(self) -> int:
        return len(self.texts)

    def table(self, idx: Any) -> pa.Table:
        """Some of its documents as a table with their human codes, in the form ``evaluate()`` reads.

        Args:
            idx: the positions of the documents.

        Returns:
            ``id``, ``text`` and ``label`` (single-label) or ``labels`` (a list of codes, or of
            ``{dimension, level}`` for the dimension->level shape).
        """
        idx = np.asarray(idx, dtype=np.int64)
        spec, targets = self.spec, self.targets[idx]
        if spec.kind == "single":
            name = "label"
            values = pa.array([spec.decode_value(spec.classes[int(t)]) for t in targets], type=spec.arrow_type())
        elif spec.kind == "multi":
            name = "labels"
            values = pa.array(
                [[spec.decode_value(c) for c, on in zip(spec.classes, row) if on > 0.5] for row in targets],
                type=pa.list_(spec.arrow_type()),
            )
        else:
            name = "labels"
            values = pa.array(
                [
                    [{"dimension": d, "level": spec.levels[int(lv) - 1]} for d, lv in zip(spec.classes, row) if lv > 0]
                    for row in targets
                ],
                type=pa.list_(pa.struct([("dimension", pa.string()), ("level", pa.string())])),
            )
        return pa.table(
            {
                "id": pa.array([self.ids[i] for i in idx], type=self.id_type),
                "text": pa.array([self.texts[i] for i in idx], type=pa.string()),
                name: values,
            }
        )


def _fold_long(table: pa.Table, labels: Any, label: Any, argument: str = "labels"):
    """Join a long label table (id + label, or id + dimension + level) onto the documents' ids."""
    lt = read_table(labels, argument)
    if isinstance(label, (list, tuple)) and len(label) == 2:
        dim_col, level_col = label
    else:
        dim_col, level_col = (label or "label"), None
    check_column_in(lt, ID, argument, "id")
    check_column_in(lt, dim_col, argument, "label")
    if level_col is not None:
        check_column_in(lt, level_col, argument, "level")
    ids = table.column(ID).to_pylist()
    pos = {i: k for k, i in enumerate(ids)}
    lid = lt.column(ID).cast(table.column(ID).type) if lt.column(ID).type != table.column(ID).type else lt.column(ID)
    values: list = [dict() if level_col else [] for _ in ids]
    unknown = set()
    dims = lt.column(dim_col).to_pylist()
    levels = lt.column(level_col).to_pylist() if level_col else None
    for k, i in enumerate(lid.to_pylist()):
        p = pos.get(i)
        if p is None:
            unknown.add(i)
            continue
        if is_missing(dims[k]):  # a row without a label (null or blank): the document has no label from it
            continue
        if level_col:
            d = canon(dims[k])
            level = None if is_missing(levels[k]) else levels[k]
            prev = values[p].get(d)
            if prev is not None and prev != level:
                raise FineclassError(
                    f"document {i!r} has two levels for dimension {d!r} in `{argument}` "
                    f"({prev!r} and {level!r}); keep one.",
                    argument,
                )
            values[p][d] = level
        else:
            values[p].append(dims[k])
    return values, unknown


def check_column_in(table: pa.Table, name: str, argument: str, what: str) -> None:
    """Raise when a named input table has no column ``name``.

    Args:
        table: the table.
        name: the column asked for.
        argument: the argument that passed the table (``"labels"``).
        what: what the column holds, for the message.

    Raises:
        FineclassError: naming ``argument``.
    """
    if name not in table.column_names:
        raise FineclassError(
            f"column `{name}` not found in `{argument}`; columns are: "
            f"{', '.join(table.column_names)}. Pass the name of its {what} column.",
            argument,
        )


def _check_unique_ids(table: pa.Table) -> None:
    """Training needs one row per document: a repeated id would make its labels ambiguous."""
    col = table.column(ID)
    if table.num_rows < 2 or pc.count_distinct(col).as_py() == table.num_rows:
        return
    counts = pc.value_counts(col)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
    raise FineclassError(
        f"{len(dup)} ids appear on more than one row (ids: {preview(dup)}); training needs one row "
        f"per document. Remove the duplicated rows, give each row its own id, or pass several "
        f"labels per document as a long `labels=` table.",
        "id",
    )


def labelled(
    data: Any,
    *,
    text: str = "text",
    label: Any = "label",
    id: str | None = None,
    labels: Any = None,
    spec: LabelSpec | None = None,
    kind: str | None = None,
    codebook: Any = None,
    levels: Sequence[str] | None = None,
) -> Labelled:
    """Read a training table and encode its labels.

    Args:
        data: the documents (any table or path).
        text: the text column.
        label: ``"col"``: single-label when the column holds scalars, multi-label when it holds lists; with
            ``labels``, the label column of that table, or a pair ``("dimension", "level")`` for the
            dimension->level shape.
        id: the id column.
        labels: a long label table: one row per (id, label) (multi-label), or per (id, dimension, level).
            Documents without a row have no label (every dimension absent).
        spec: a fixed label set; inferred from the data when None.
        kind: the shape, when the data leave it open.
        codebook: names and descriptions of the classes.
        levels: the ordered levels of the dimension->level shape.

    Returns:
        A :class:`Labelled`: ids, texts, encoded targets and the LabelSpec.

    Raises:
        FineclassError: naming the argument at fault (missing texts or labels, repeated ids, mixed types...).
    """
    table = with_id(read_table(data), id)
    table, _ = check_text(table, text, on_empty="error")
    _check_unique_ids(table)
    if labels is not None:
        values, unknown = _fold_long(table, labels, label)
        kind = kind or ("dimlevel" if isinstance(label, (list, tuple)) else "multi")
    else:
        if isinstance(label, (list, tuple)):
            raise FineclassError(
                "`label` names two columns (dimension, level) only together with a long `labels=` table.", "label"
            )
        check_column(table, label, "label")
        col = table.column(label)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            kind = kind or "multi"
            values = [list(v or []) for v in col.to_pylist()]
            blank = [i for i, v in zip(table.column(ID).to_pylist(), values) if any(is_missing(x) for x in v)]
            if blank:
                raise FineclassError(
                    f"{len(blank)} documents have a missing or blank entry in their label list in column "
                    f"`{label}` (ids: {preview(blank)}). Remove those entries (an empty list means no label).",
                    "label",
                )
        else:
            kind = kind or "single"
            values = col.to_pylist()
            missing = [i for i, v in zip(table.column(ID).to_pylist(), values) if is_missing(v)]
            if missing:
                raise FineclassError(
                    f"{len(missing)} documents have no label (a missing or blank value) in column `{label}` (ids: "
                    f"{preview(missing)}). Remove them (or fill in their labels), or classify them after training.",
                    "label",
                )
            types = {type(v).__name__ for v in values}
            if len(types) > 1:
                raise FineclassError(
                    f"the label column `{label}` mixes types ({', '.join(sorted(types))}); "
                    f"use one type for all labels.",
                    "label",
                )
    if spec is None:
        spec = LabelSpec.infer(values, kind=kind, levels=levels, codebook=read_codebook(codebook))
    elif codebook is not None:
        spec = with_codebook(spec, codebook)
    targets = spec.encode(values, argument="label")
    return Labelled(
        table.column(ID).to_pylist(), table.column("text").to_pylist(), targets, spec, table.column(ID).type
    )


def with_codebook(spec: LabelSpec, codebook: Any) -> LabelSpec:
    """A fixed label set with a codebook's names and descriptions laid over its own.

    Args:
        spec: the label set.
        codebook: any form ``labels.read_codebook`` reads.

    Returns:
        The label set, its classes unchanged.

    Raises:
        FineclassError: naming ``codebook`` when it names classes the label set does not have.
    """
    names, descriptions = split_codebook(read_codebook(codebook))
    unknown = sorted((set(names) | set(descriptions)) - set(spec.classes))
    if unknown:
        raise FineclassError(
            f"the codebook names classes {preview(unknown)} that are not in `spec` ({len(spec.classes)} classes). "
            f"Add them to the label set, or drop them from the codebook.",
            "codebook",
        )
    return replace(spec, names={**spec.names, **names}, descriptions={**spec.descriptions, **descriptions})
