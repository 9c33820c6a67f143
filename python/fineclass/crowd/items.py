"""What the parts of the workflow share: proposals as reviewable items, and reading decisions."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Sequence

import pyarrow as pa

from ..errors import FineclassError
from ..labels import as_spec, canon
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


def document_item(doc: str) -> str:
    """The item of a sheet row that carries a document without proposals (a row for the coder's additions).

    Args:
        doc: the document's key.

    Returns:
        The item, ``d`` and 12 hex digits.
    """
    return "d" + hashlib.sha1(json.dumps([doc], ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


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


class LabelSet:
    """The codes a coder may write in a review sheet's ``correction`` and ``addition`` cells.

    Codes are matched as written, else without case (``High`` is ``high``), else by a class's name in the
    spec's codebook. Without a spec the label set is what the proposals hold: their labels, or their dimensions
    and levels.

    Args:
        fields: the sheet's label columns (see :func:`shape`).
        spec: a LabelSpec (or what :func:`fineclass.labels.as_spec` reads), or None.
        items: the proposals' items (see :func:`proposal_items`), used when ``spec`` is None.
    """

    def __init__(self, fields: tuple[str, ...], spec: Any = None, items: dict | None = None):
        self.dimlevel = fields == ("dimension", "level")
        spec = as_spec(spec)
        if spec is not None:
            if (spec.kind == "dimlevel") != self.dimlevel:
                raise FineclassError(
                    f"`spec` is a {spec.kind} label set, but the proposals have columns {', '.join(fields)}.", "spec"
                )
            classes, levels, names = list(spec.classes), list(spec.levels or []), dict(spec.names)
        else:
            labels = [e["label"] for e in (items or {}).values()]
            classes = sorted({lab[0] for lab in labels})
            levels = sorted({lab[1] for lab in labels}) if self.dimlevel else []
            names = {}
        self.classes, self.levels = classes, levels
        self._codes = self._index(classes, names)
        self._levels = self._index(levels, {})

    @staticmethod
    def _index(codes: list[str], names: dict[str, str]) -> dict[str, str]:
        index: dict[str, str] = {}
        for c in codes:
            index.setdefault(c.casefold(), c)
        for c, n in names.items():
            index.setdefault(n.strip().casefold(), c)
        return {**index, **{c: c for c in codes}}

    def _find(self, index: dict[str, str], value: str) -> str | None:
        v = value.strip()
        return index.get(v) or index.get(v.casefold())

    def correction(self, value: str, label: tuple[str, ...]) -> tuple[str, ...]:
        """A correction of the proposal ``label``: a label, or (dimension->level) a level of its dimension.

        Args:
            value: the cell's text.
            label: the proposal the row holds.

        Returns:
            The corrected code, in the shape of ``label``.

        Raises:
            ValueError: with the reason, when the value is not in the label set.
        """
        if self.dimlevel:
            level = self._find(self._levels, value)
            if level is None:
                raise ValueError(
                    f"correction {value.strip()!r} is not a level ({', '.join(self.levels)}); a correction "
                    f"gives the level of the row's dimension (code another dimension in `addition`)"
                )
            return (label[0], level)
        code = self._find(self._codes, value)
        if code is None:
            raise ValueError(f"correction {value.strip()!r} is not in the label set")
        return (code,)

    def additions(self, value: str) -> list[tuple[str, ...]]:
        """The codes of an ``addition`` cell: codes separated by ``;``, each ``dimension: level`` for dimension->level.

        Args:
            value: the cell's text.

        Returns:
            The codes, in order, without repeats.

        Raises:
            ValueError: with the reason, when a piece is not in the label set.
        """
        whole = None if self.dimlevel else self._find(self._codes, value)
        pieces = [value] if whole is not None else [p for p in value.split(";") if p.strip()]
        out: list[tuple[str, ...]] = []
        for piece in pieces:
            if self.dimlevel:
                dim, sep, lev = piece.rpartition(":")
                code = self._find(self._codes, dim) if sep else None
                level = self._find(self._levels, lev) if sep else None
                if code is None or level is None:
                    raise ValueError(
                        f"addition {piece.strip()!r} is not 'dimension: level' with a dimension and a level "
                        f"({', '.join(self.levels)}) of the label set"
                    )
                found: tuple[str, ...] = (code, level)
            else:
                code = self._find(self._codes, piece)
                if code is None:
                    raise ValueError(f"addition {piece.strip()!r} is not in the label set")
                found = (code,)
            if found not in out:
                out.append(found)
        return out


def parse_time(value: str) -> datetime | None:
    """A timestamp typed in a sheet (ISO 8601, ``2026-05-04 10:31:07``; a ``Z`` or offset is converted to UTC).

    Args:
        value: the cell's text ("" for none).

    Returns:
        A naive datetime (UTC when the text had an offset), or None for an empty cell.

    Raises:
        ValueError: when the text is not such a timestamp.
    """
    v = (value or "").strip()
    if not v:
        return None
    t = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo is not None else t
