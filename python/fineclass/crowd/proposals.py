"""Proposing: fitted classifiers and chat endpoints suggest labels for documents, in one long table."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from ..client import Endpoint, chat_many
from ..errors import FineclassError, preview
from ..labels import LabelSpec, as_spec, canon
from ..protocol import InvalidAnswer, build_messages, parse_answer, predictions_to_proposals
from ..tables import ID, check_text, read_table, with_id

STATS_KEY = b"fineclass.proposal_stats"


def _is_classifier(p: Any) -> bool:
    return hasattr(p, "spec_") and callable(getattr(p, "predict", None))


def _named_proposers(proposers: Any) -> list[tuple[str, Any]]:
    if isinstance(proposers, Mapping):
        items = [(str(k), v) for k, v in proposers.items()]
    elif isinstance(proposers, (list, tuple)):
        items = []
        for k, p in enumerate(proposers):
            if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
                items.append(p)
            elif isinstance(p, Endpoint):
                items.append((p.label, p))
            elif _is_classifier(p):
                items.append((str(getattr(p, "name_", None) or f"model{k + 1}"), p))
            else:
                items.append((f"#{k + 1}", p))
    else:
        items = [("model1" if _is_classifier(proposers) else "#1", proposers)]
    if not items:
        raise FineclassError("`proposers` is empty; pass fitted classifiers and/or Endpoint(...) objects.", "proposers")
    for name, p in items:
        if not (isinstance(p, Endpoint) or _is_classifier(p)):
            raise FineclassError(
                f"proposer {name} is a {type(p).__name__}; a proposer is a fitted fineclass "
                f"classifier or a fineclass.client.Endpoint(url, model).",
                "proposers",
            )
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FineclassError(
            f"two proposers share the name {preview(dup)}; give each a name: pass a dict "
            f"{{name: proposer}} or Endpoint(..., name=...).",
            "proposers",
        )
    return items


def _label_fields(spec: LabelSpec) -> tuple[str, ...]:
    return ("dimension", "level") if spec.kind == "dimlevel" else ("label",)


def _check_proposal(spec: LabelSpec, p: Mapping[str, Any]) -> str | None:
    if spec.kind == "dimlevel":
        if p["dimension"] not in spec.classes:
            return f"dimension {p['dimension']!r} is not in the label set"
        if p["level"] not in (spec.levels or []):
            return f"level {p['level']!r} is not one of {', '.join(spec.levels)}"
        return None
    return None if canon(p["label"]) in spec.classes else f"label {p['label']!r} is not in the label set"


def propose(
    data: Any,
    proposers: Any,
    *,
    text: str = "text",
    id: str | None = None,
    spec: Any = None,
    prompt: str | None = None,
    return_stats: bool = False,
    progress: bool = False,
):
    """Ask each proposer for labels.

    Args:
        data: the documents (any table or path ``tables.read_table`` reads).
        proposers: a list (or ``{name: proposer}`` dict) of fitted classifiers and ``Endpoint`` objects. Names: an
            endpoint's ``name`` (default its model), a classifier's ``name_`` or ``model1``, ...
        text: the text column.
        id: the id column.
        spec: the label set endpoints are asked about and answers are checked against; default: the first
            classifier's ``spec_``. Required when every proposer is an endpoint (a LabelSpec, a dict, a JSON file
            or a saved model's folder).
        prompt: instructions replacing the default ones (see :func:`fineclass.protocol.build_messages`).
        return_stats: also return the per-proposer stats table (it is also kept in the table's metadata; read it
            with :func:`proposal_stats`).
        progress: show a progress bar per endpoint.

    Returns:
        A long table: ``id, dimension, level`` (or ``id, label``), ``proposer``, ``confidence`` (null where
        unknown) and ``error``; one row per proposal. A document a proposer could not answer (a failed request,
        an answer of neither protocol form, labels outside the label set) gets one row with null labels and the
        reason in ``error``; a valid empty answer gives no rows. With ``return_stats``: ``(table, stats)``.

    Raises:
        FineclassError: naming ``proposers`` or ``spec`` when they do not fit, or what an endpoint refused.

    Example:
        >>> fineclass.propose(tweets, [clf, fineclass.Endpoint(url, "llama3")], spec=clf.spec_)  # doctest: +SKIP
    """
    named = _named_proposers(proposers)
    spec = as_spec(spec)
    if spec is None:
        first = next((p for _, p in named if _is_classifier(p)), None)
        if first is None:
            raise FineclassError(
                "every proposer is an endpoint, so the label set is unknown: pass `spec=` (a "
                "LabelSpec, a dict, or a saved model's folder or labels.json).",
                "spec",
            )
        spec = first.spec_
    for name, p in named:
        if _is_classifier(p):
            ps = p.spec_
            if ps.kind != spec.kind or not set(ps.classes) <= set(spec.classes):
                raise FineclassError(
                    f"proposer {name} predicts a {ps.kind} label set with classes "
                    f"{preview(ps.classes)}, which does not fit `spec` ({spec.kind}, "
                    f"{preview(spec.classes)}).",
                    "spec",
                )
    table = with_id(read_table(data), id)
    table, empty = check_text(table, text, on_empty="flag")
    ids = table.column(ID)
    texts = table.column("text").to_pylist()
    keep = np.flatnonzero(~empty)
    fields = _label_fields(spec)
    rows: dict[str, list] = {"id": [], **{f: [] for f in fields}, "proposer": [], "confidence": [], "error": []}

    def add(i, name, prop=None, conf=None, err=None):
        rows["id"].append(i)
        for f in fields:
            rows[f].append(None if prop is None else prop[f])
        rows["proposer"].append(name)
        rows["confidence"].append(conf)
        rows["error"].append(err)

    id_list = ids.to_pylist()

    def answered(name, st, k, props, invalid=None):  # one document's answer from one proposer, or why it is invalid
        if invalid is not None:
            add(id_list[k], name, err=f"invalid answer: {invalid}")
            st["invalid"] += 1
            return
        for prop in props:
            add(id_list[k], name, prop, prop.get("confidence"))
            st["proposals"] += 1

    stats = []
    for name, p in named:
        start = time.monotonic()
        st = {
            "proposer": name,
            "kind": "endpoint" if isinstance(p, Endpoint) else "model",
            "items": len(id_list),
            "proposals": 0,
            "invalid": 0,
            "errors": 0,
            "requests": 0,
            "cached": 0,
            "prompt_tokens": None,
            "completion_tokens": None,
            "seconds": 0.0,
        }
        for k in np.flatnonzero(empty):
            add(id_list[k], name, err="the text is empty")
            st["errors"] += 1

        if isinstance(p, Endpoint):
            convs = [build_messages(spec, texts[k], prompt) for k in keep]
            results, cst = chat_many(p, convs, progress=progress)
            st.update(
                requests=cst["requests"],
                cached=cst["cached"],
                prompt_tokens=cst["prompt_tokens"],
                completion_tokens=cst["completion_tokens"],
            )
            for k, r in zip(keep, results):
                if r.error is not None:
                    add(id_list[k], name, err=f"request failed: {r.error}")
                    st["errors"] += 1
                    continue
                try:
                    answered(name, st, k, parse_answer(spec, r.content))
                except InvalidAnswer as e:
                    answered(name, st, k, [], str(e))
        elif len(keep):
            sub = pa.table({ID: ids.take(pa.array(keep, pa.int64())), "text": [texts[k] for k in keep]})
            preds = p.predict(sub, text="text", id=ID)
            if preds.column(ID).to_pylist() != sub.column(ID).to_pylist():
                raise FineclassError(
                    f"proposer {name} returned predictions for other documents than it was given; check its predict().",
                    "proposers",
                )
            for k, props in zip(keep, predictions_to_proposals(spec, preds)):
                bad = [m for m in (_check_proposal(spec, q) for q in props) if m]
                answered(name, st, k, props, bad[0] if bad else None)
        st["seconds"] = round(time.monotonic() - start, 3)
        stats.append(st)
    ltype = spec.arrow_type()
    cols = {"id": pa.array(rows["id"], ids.type)}
    if spec.kind == "dimlevel":
        cols["dimension"] = pa.array(rows["dimension"], pa.string())
        cols["level"] = pa.array(rows["level"], pa.string())
    else:
        cols["label"] = pa.array([None if v is None else spec.decode_value(canon(v)) for v in rows["label"]], ltype)
    cols["proposer"] = pa.array(rows["proposer"], pa.string())
    cols["confidence"] = pa.array(rows["confidence"], pa.float64())
    cols["error"] = pa.array(rows["error"], pa.string())
    out = pa.table(cols)
    meta = {STATS_KEY: json.dumps(stats).encode(), b"fineclass.label_spec": json.dumps(spec.to_dict()).encode()}
    out = out.replace_schema_metadata(meta)
    if return_stats:
        return out, _stats_table(stats)
    return out


def _stats_table(stats: list[dict]) -> pa.Table:
    schema = pa.schema(
        [
            ("proposer", pa.string()),
            ("kind", pa.string()),
            ("items", pa.int64()),
            ("proposals", pa.int64()),
            ("invalid", pa.int64()),
            ("errors", pa.int64()),
            ("requests", pa.int64()),
            ("cached", pa.int64()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("seconds", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(stats, schema=schema)


def proposal_stats(proposals: pa.Table) -> pa.Table:
    """The per-proposer stats that :func:`propose` keeps in its table's metadata.

    Args:
        proposals: the table :func:`propose` returned (or read back from its Parquet file).

    Returns:
        Per proposer: items, proposals, invalid answers, errors, requests sent, cache hits, tokens, seconds.

    Raises:
        FineclassError: naming ``proposals`` when it carries no stats.
    """
    meta = proposals.schema.metadata or {}
    if STATS_KEY not in meta:
        raise FineclassError(
            "`proposals` carries no stats (they are kept in the metadata of the table "
            "propose() returns, and in Parquet files written from it).",
            "proposals",
        )
    return _stats_table(json.loads(meta[STATS_KEY]))
