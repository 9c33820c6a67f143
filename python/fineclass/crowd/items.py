"""What the parts of the workflow share: proposals as reviewable items, and reading decisions."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import pyarrow as pa

from ..errors import FineclassError
from ..labels import canon
from ..tables import ID

_YES = {"y", "yes", "1", "true"}
_NO = {"n", "no", "0", "false"}


def shape(table: pa.Table, argument: str) -> tuple[str, ...]:
    """The label columns of a proposals or decisions table.

    Args:
        table: the table.
        argument: its argument's name, for errors.

    Returns:
        ``("dimension", "level")`` or ``("label",)``.

    Raises:
        FineclassError: naming ``argument`` when it has no ``id`` or no label columns.
    """
    cols = table.column_names
    if ID not in cols:
        raise FineclassError(f"`{argument}` has no `id` column; columns are: {', '.join(cols)}.", argument)
    if "dimension" in cols and "level" in cols:
        return ("dimension", "level")
    if "label" in cols:
        return ("label",)
    raise FineclassError(
        f"`{argument}` needs label columns `dimension` and `level`, or `label`; columns are: {', '.join(cols)}.",
        argument,
    )


def key_str(v: Any) -> str:
    """A value as the text key items and votes are matched by (its canonical string; "" for None).

    Args:
        v: an id, label, dimension, level or coder.

    Returns:
        The key.
    """
    return "" if v is None else canon(v)


def _item_id(doc: str, label: Sequence[str]) -> str:
    blob = json.dumps([doc, *label], ensure_ascii=False)
    return "p" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def text_check(text: str) -> str:
    """A short hash of a document's text, written beside it in a review sheet to detect edits.

    Args:
        text: the text.

    Returns:
        10 hex digits.
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def proposal_items(proposals: pa.Table, fields: tuple[str, ...]):
    """The distinct proposals of a table, each a review item named by a hash of its document and label.

    Args:
        proposals: the proposals (rows without a label, errors, are skipped).
        fields: its label columns (see :func:`shape`).

    Returns:
        ``{item: {"id": the id as given, "doc": its key, "label": (..), "proposers": [...]}}``.
    """
    ids = proposals.column(ID).to_pylist()
    labs = [proposals.column(f).to_pylist() for f in fields]
    props = (
        proposals.column("proposer").to_pylist()
        if "proposer" in proposals.column_names
        else [None] * proposals.num_rows
    )
    items: dict[str, dict] = {}
    for k in range(proposals.num_rows):
        lab = tuple(key_str(col[k]) for col in labs)
        if any(v == "" for v in lab):
            continue  # an error row: nothing was proposed
        doc = key_str(ids[k])
        item = _item_id(doc, lab)
        entry = items.get(item)
        if entry is None:
            entry = items[item] = {"id": ids[k], "doc": doc, "label": lab, "proposers": []}
        if props[k] is not None and props[k] not in entry["proposers"]:
            entry["proposers"].append(props[k])
    return items


def parse_accept(v: str) -> str | None:
    """A review decision, read leniently: Y/N, yes/no, 1/0, true/false, in any case.

    Args:
        v: the cell's text.

    Returns:
        ``"Y"``, ``"N"``, or None when it is none of these.
    """
    s = (v or "").strip().casefold()
    if s in _YES:
        return "Y"
    if s in _NO:
        return "N"
    return None
