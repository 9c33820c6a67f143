"""The answer protocol: how a proposer is asked for labels, and how its answer is read.

One reader, :func:`parse_answer`, serves every place an answer comes from: a chat endpoint (``propose``), a
fineclass server (``fineclass serve``), and free generation by a generative model (``generate()``). It reads
two forms:

- the JSON form fineclass asks endpoints for (:func:`build_messages`) and its server writes
  (:func:`format_answer`): ``{"label": "5", "confidence": 0.9}``; ``{"labels": ["3", "7"]}``;
  ``{"labels": [{"dimension": "happiness", "level": "high"}]}`` (or ``{"labels": {"happiness": "high"}}``);
- the answer form of "Rethinking Scale", which fineclass's generative models learn and a model exported from
  fineclass answers in when served by vLLM or llama.cpp: ``Answer = [5]``, ``Answer = [3, 7]`` (``Answer = []``
  for none), and for the dimension->level shape a JSON dictionary of the dimensions present,
  ``{"happiness": "high"}``.

The rules, the same for both forms: a JSON answer is the whole answer (inside one optional ```json fence);
``Answer = [...]`` may follow other words. A label matches a class code as written, else a class code or name
compared without letter case. An answer that has neither form is *unparseable*; a well-formed answer that
names a label, dimension or level outside the label set, two levels for one dimension, several labels for a
single-label task or more labels than ``max_labels`` is *invalid_label*. Nothing is mapped to a nearby label.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Sequence

import pyarrow as pa

from .errors import FineclassError
from .labels import ABSENT, LabelSpec, canon

OK, UNPARSEABLE, INVALID_LABEL, EMPTY_TEXT = "ok", "unparseable", "invalid_label", "empty_text"
STATUSES = (OK, UNPARSEABLE, INVALID_LABEL, EMPTY_TEXT)

DEFAULT_INSTRUCTIONS = (
    "You code texts for social science research. Read the text the user sends and code it with the label "
    "set below. Use only the labels listed, spelled exactly as listed.\n\n{labels}\n\n{format}"
)


# ---------------------------------------------------------------------------------------------- asking
def _label_lines(spec: LabelSpec) -> str:
    lines = []
    for c in spec.classes:
        name = spec.names.get(c)
        desc = spec.descriptions.get(c)
        line = f"- {c}"
        if name and name != c:
            line += f" ({name})"
        if desc:
            line += f": {desc}"
        lines.append(line)
    head = {
        "single": "Labels (choose exactly one):",
        "multi": "Labels (choose every label that applies, possibly none):"
        if not spec.max_labels
        else f"Labels (choose every label that applies, at most {spec.max_labels}):",
        "dimlevel": f"Dimensions (for each dimension present in the text give its level: "
        f"{', '.join(spec.levels or [])}):",
    }[spec.kind]
    return head + "\n" + "\n".join(lines)


def _format_line(spec: LabelSpec) -> str:
    if spec.kind == "single":
        ex = '{"label": "<label>", "confidence": <0 to 1>}'
    elif spec.kind == "multi":
        ex = '{"labels": ["<label>", ...]}'
    else:
        levels = "|".join(spec.levels or [])
        ex = '{"labels": [{"dimension": "<dimension>", "level": "<' + levels + '>"}, ...]}'
    extra = "" if spec.kind == "single" else " List only what is present; give an empty list if nothing is."
    return f"Answer with one JSON object and nothing else, in this form: {ex}.{extra}"


def build_messages(spec: LabelSpec, text: str, prompt: str | None = None) -> list[dict]:
    """The chat messages for one document: the instructions as the system message, the text as the user's.

    Args:
        spec: the label set the endpoint is asked about.
        text: the document.
        prompt: instructions replacing the default ones; they may contain ``{labels}`` (the label list) and
            ``{format}`` (the answer format, appended when missing).

    Returns:
        ``[{"role": "system", ...}, {"role": "user", "content": text}]``: the document is always the last user
        message on its own, which is how ``fineclass serve`` finds it.

    Example:
        >>> build_messages(LabelSpec(kind="single", classes=["a", "b"]), "a text")[-1]
        {'role': 'user', 'content': 'a text'}
    """
    template = DEFAULT_INSTRUCTIONS if prompt is None else str(prompt)
    system = template.replace("{labels}", _label_lines(spec)).replace("{format}", _format_line(spec))
    if prompt is not None and "{format}" not in template:
        system += "\n\n" + _format_line(spec)
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------------------------------- reading
class InvalidAnswer(ValueError):
    """An answer that has neither form of the protocol, or names something outside the label set.

    ``status`` says which: ``"unparseable"`` or ``"invalid_label"``.
    """

    def __init__(self, message: str, status: str = INVALID_LABEL):
        super().__init__(message)
        self.status = status


_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.S)
_PAPER = re.compile(r"Answer\s*=\s*\[([^\[\]\n]*)\]")


class _Reader:
    """Matches the pieces of one answer against a label set."""

    def __init__(self, spec: LabelSpec):
        self.spec = spec
        self.exact = {c: c for c in spec.classes}
        self.loose: dict[str, str] = {}
        for c in spec.classes:
            self.loose.setdefault(c.casefold(), c)
        for c, n in spec.names.items():
            self.loose.setdefault(n.strip().casefold(), c)
        self.levels = {lv.casefold(): lv for lv in spec.levels or []}

    def code(self, value: Any, what: str = "label") -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidAnswer(f"{what} {value!r} is not a label")
        key = canon(value)
        found = self.exact.get(key) or self.loose.get(key.casefold())
        if found is None:
            raise InvalidAnswer(f"{what} {value!r} is not in the label set")
        return found

    def level(self, dimension: str, value: Any) -> str | None:
        """The level, or None when the answer says the dimension is absent."""
        lv = self.levels.get(value.strip().casefold()) if isinstance(value, str) else None
        if lv is None:
            if isinstance(value, str) and value.strip().casefold() == ABSENT:
                return None
            raise InvalidAnswer(
                f"level {value!r} of dimension {dimension!r} is not one of {', '.join(self.spec.levels)}"
            )
        return lv


def _confidence(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    return float(value) if ok else None


def _labels(reader: _Reader, items: Sequence[Any]) -> list[dict]:
    out, seen = [], set()
    for item in items:
        conf = None
        if isinstance(item, dict):
            conf = _confidence(item.get("confidence"))
            item = item.get("label")
        c = reader.code(item)
        if c not in seen:
            seen.add(c)
            out.append({"label": c, "confidence": conf})
    return out


def _cells(reader: _Reader, items: Sequence[Any]) -> list[dict]:
    out, seen = [], {}
    for item in items:
        if not isinstance(item, dict):
            raise InvalidAnswer(f"an entry of `labels` is not an object: {item!r}")
        d = reader.code(item.get("dimension"), "dimension")
        lv = reader.level(d, item.get("level"))
        if d in seen:
            if seen[d] != lv:
                raise InvalidAnswer(f"dimension {d!r} has two levels ({seen[d]!r} and {lv!r})")
            continue
        seen[d] = lv
        if lv is not None:
            out.append({"dimension": d, "level": lv, "confidence": _confidence(item.get("confidence"))})
    return out


def _from_json(reader: _Reader, data: dict) -> list[dict]:
    kind = reader.spec.kind
    if kind == "single":
        if "label" in data:
            value = data["label"]
        elif isinstance(data.get("labels"), list) and len(data["labels"]) == 1:
            value = data["labels"][0]
        else:
            raise InvalidAnswer("the answer has no `label`", UNPARSEABLE)
        if isinstance(value, list):
            raise InvalidAnswer("a single-label answer gave a list")
        return [{"label": reader.code(value), "confidence": _confidence(data.get("confidence"))}]
    items = data.get("labels")
    if kind == "dimlevel":
        if "labels" not in data:  # the paper's form: a dictionary of the dimensions present
            items = data
        if isinstance(items, dict):
            items = [{"dimension": k, "level": v} for k, v in items.items()]
        if not isinstance(items, list):
            raise InvalidAnswer("the answer has no `labels` list", UNPARSEABLE)
        return _cells(reader, items)
    if not isinstance(items, list):
        raise InvalidAnswer("the answer has no `labels` list", UNPARSEABLE)
    return _labels(reader, items)


def _from_paper(reader: _Reader, inner: str) -> list[dict]:
    pieces = [x.strip().strip("'\"").strip() for x in inner.split(",")] if inner.strip() else []
    if reader.spec.kind == "single":
        if not pieces:
            raise InvalidAnswer("the answer names no label: Answer = []", UNPARSEABLE)
        if len(pieces) > 1:
            raise InvalidAnswer("a single-label answer names several labels")
    return _labels(reader, [p for p in pieces if p])


def parse_answer(spec: LabelSpec, content: str) -> list[dict]:
    """Read one answer strictly, in either form of the protocol (see the module's description).

    Args:
        spec: the label set the answer must stay within.
        content: the answer's text.

    Returns:
        The proposals, in the answer's order, each once: ``{"label": code, "confidence": ...}`` (single,
        multi) or ``{"dimension": d, "level": l, "confidence": ...}`` (dimlevel); ``confidence`` is None where
        the answer gave none. A valid empty answer gives ``[]``.

    Raises:
        InvalidAnswer: with ``status`` ``"unparseable"`` (neither form) or ``"invalid_label"`` (something
            outside the label set).

    Example:
        >>> spec = LabelSpec(kind="single", classes=["1", "5"], names={"5": "Labour"})
        >>> parse_answer(spec, "Answer = [labour]")
        [{'label': '5', 'confidence': None}]
    """
    if not isinstance(content, str) or not content.strip():
        raise InvalidAnswer("the answer is empty", UNPARSEABLE)
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    reader = _Reader(spec)
    out = None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidAnswer(f"the answer is not JSON: {content[:80]!r}", UNPARSEABLE) from None
        if not isinstance(data, dict):
            raise InvalidAnswer("the answer is not a JSON object", UNPARSEABLE)
        out = _from_json(reader, data)
    elif spec.kind != "dimlevel":
        found = _PAPER.search(text)
        if found is not None:
            out = _from_paper(reader, found.group(1))
    if out is None:
        raise InvalidAnswer(f"the answer is neither a JSON object nor `Answer = [...]`: {content[:80]!r}", UNPARSEABLE)
    if spec.kind == "multi" and spec.max_labels and len(out) > spec.max_labels:
        raise InvalidAnswer(f"the answer gives {len(out)} labels; at most {spec.max_labels} are allowed")
    return out


def read_answer(spec: LabelSpec, content: str) -> tuple[str, Any]:
    """:func:`parse_answer` as a status and a value, the way ``generate()`` records each answer.

    Args:
        spec: the label set.
        content: the answer's text.

    Returns:
        ``(status, value)``: status ``"ok"``, ``"unparseable"`` or ``"invalid_label"``; value (None unless ok)
        a class code (single), the codes in the label set's order (multi), or ``{dimension: level}`` in the
        label set's order (dimlevel).

    Example:
        >>> read_answer(LabelSpec(kind="multi", classes=["a", "b"]), "Answer = [b, a]")
        ('ok', ['a', 'b'])
    """
    try:
        proposals = parse_answer(spec, content)
    except InvalidAnswer as e:
        return e.status, None
    if spec.kind == "single":
        return OK, proposals[0]["label"]
    if spec.kind == "multi":
        chosen = {p["label"] for p in proposals}
        return OK, [c for c in spec.classes if c in chosen]
    cells = {p["dimension"]: p["level"] for p in proposals}
    return OK, {d: cells[d] for d in spec.classes if d in cells}


def summarize(statuses: Sequence[str]) -> dict:
    """How many answers have each status.

    Args:
        statuses: one status per answer.

    Returns:
        ``{"ok": .., "unparseable": .., "invalid_label": .., "empty_text": .., "n": ..}``.
    """
    counts = {s: 0 for s in STATUSES}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    counts["n"] = len(statuses)
    return counts


# ---------------------------------------------------------------------------------------------- writing
def format_answer(spec: LabelSpec, proposals: Sequence[Mapping[str, Any]]) -> str:
    """The JSON answer :func:`parse_answer` reads, from proposals as it returns them.

    Args:
        spec: the label set.
        proposals: as :func:`parse_answer` returns them (a single-label answer uses the first).

    Returns:
        One JSON object, confidences rounded to 4 digits.

    Example:
        >>> format_answer(LabelSpec(kind="single", classes=["a", "b"]), [{"label": "a", "confidence": 0.9}])
        '{"label": "a", "confidence": 0.9}'
    """

    def r(x):
        return None if x is None else round(float(x), 4)

    if spec.kind == "single":
        p = proposals[0]
        return json.dumps({"label": p["label"], "confidence": r(p.get("confidence"))}, ensure_ascii=False)
    if spec.kind == "multi":
        return json.dumps(
            {"labels": [{"label": p["label"], "confidence": r(p.get("confidence"))} for p in proposals]},
            ensure_ascii=False,
        )
    return json.dumps(
        {
            "labels": [
                {"dimension": p["dimension"], "level": p["level"], "confidence": r(p.get("confidence"))}
                for p in proposals
            ]
        },
        ensure_ascii=False,
    )


def predictions_to_proposals(spec: LabelSpec, predictions: pa.Table) -> list[list[dict]]:
    """Per document, the proposals that a classifier's prediction table makes.

    Args:
        spec: the classifier's label set.
        predictions: what ``Classifier.predict`` returns (``label`` and ``confidence``, or ``labels`` with the
            ``p_<class>`` columns).

    Returns:
        One list of proposals per row, in the form :func:`parse_answer` returns.

    Raises:
        FineclassError: naming ``predictions`` when its label column is missing.
    """
    n = predictions.num_rows
    out: list[list[dict]] = [[] for _ in range(n)]
    cols = predictions.column_names
    needed = "label" if spec.kind == "single" else "labels"
    if needed not in cols:
        raise FineclassError(f"`predictions` has no `{needed}` column; columns are: {', '.join(cols)}.", "predictions")
    if spec.kind == "single":
        labels = predictions.column("label").to_pylist()
        confs = predictions.column("confidence").to_pylist() if "confidence" in cols else [None] * n
        for i in range(n):
            if labels[i] is not None:
                out[i].append({"label": str(labels[i]), "confidence": confs[i]})
        return out
    labels = predictions.column("labels").to_pylist()
    if spec.kind == "multi":
        for i in range(n):
            for lab in labels[i] or []:
                col = f"p_{lab}"
                c = predictions.column(col)[i].as_py() if col in cols else None
                out[i].append({"label": str(lab), "confidence": c})
        return out
    for i in range(n):
        for s in labels[i] or []:
            out[i].append({"dimension": s["dimension"], "level": s["level"], "confidence": s.get("confidence")})
    return out
