"""Free generation, the paper's way: one greedy answer per document, parsed strictly."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from ..._checks import whole_number
from ...errors import FineclassError, warn_user
from ...protocol import EMPTY_TEXT, read_answer, summarize
from ...tables import check_text, read_table, with_id
from .method import GenerativeMethod
from .plan import Plan


def generative_plan(classifier: Any, argument: str = "classifier") -> Plan:
    """The prompt plan of a fitted generative classifier.

    Args:
        classifier: a fitted Classifier.
        argument: its argument's name, for errors.

    Returns:
        Its :class:`Plan`.

    Raises:
        FineclassError: naming ``argument`` when it is not fitted, or does not use the generative method.
    """
    if not hasattr(classifier, "module_"):
        raise FineclassError(
            f"`{argument}` is not fitted: train it, load it, or build it with zero_shot_classifier().", argument
        )
    if not isinstance(classifier.method_, GenerativeMethod) or classifier.method_.plan is None:
        raise FineclassError(
            f"`{argument}` uses the {classifier.method!r} method; free generation and export need a "
            f"generative model (method='generative', or zero_shot_classifier()).",
            argument,
        )
    return classifier.method_.plan


@torch.no_grad()
@contextlib.contextmanager
def _fp32_logits(module):
    """The output layer in fp32 while generating, as in scoring (_candidate_probabilities).

    With bf16 weights or bf16 autocast, logits of about 20 are rounded to steps of 0.125: two labels whose
    log-probabilities differ by less than that tie exactly, and greedy decoding then picks the lower token id
    instead of the likelier label. Computing the last layer in fp32 makes the greedy choice follow the model.
    """
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Linear):
        yield
        return
    weight = head.weight if head.weight.dtype == torch.float32 else head.weight.detach().float()
    bias = None if head.bias is None else head.bias.detach().float()

    def forward(x):
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), weight, bias)

    head.forward = forward
    try:
        yield
    finally:
        head.__dict__.pop("forward", None)


def generate(
    classifier,
    data: Any,
    *,
    text: str = "text",
    id: str | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    warn: bool = True,
) -> pa.Table:
    """Generate one answer per document (greedy) and parse it strictly, as in the paper.

    Rows whose answer is not ok carry no label; the counts are in the table's schema metadata
    (``fineclass.generation``) and, when some answers failed, in a warning. Scoring with ``predict()`` is faster and
    always yields a valid label.

    Args:
        classifier: a fitted generative Classifier.
        data: the documents (any table or path).
        text: the text column.
        id: the id column.
        max_new_tokens: the most tokens generated per answer (None: the longest valid answer, plus room).
        batch_size: documents per ``generate()`` call.
        progress: show a progress bar.
        warn: warn when some answers could not be parsed or named labels outside the label set.

    Returns:
        One row per document: ``id``, ``answer`` (the raw text), the parsed ``label`` (single) or ``labels`` (multi,
        dimlevel), ``status`` (ok, unparseable, invalid_label, empty_text) and ``truncated``.

    Raises:
        FineclassError: naming ``classifier``, ``batch_size`` or ``max_new_tokens`` when they do not fit.

    Example:
        >>> table = fineclass.generate(clf, tweets)  # doctest: +SKIP
    """
    from transformers import GenerationConfig

    plan = generative_plan(classifier)
    batch_size = whole_number(batch_size, "batch_size")
    max_new_tokens = whole_number(max_new_tokens, "max_new_tokens", allow_none=True)
    table = with_id(read_table(data), id)
    table, empty = check_text(table, text, on_empty="flag")
    texts = [t if not e else "" for t, e in zip(table.column("text").to_pylist(), empty)]
    module, tok, spec = classifier.module_, classifier.tokenizer_, classifier.spec_
    device = classifier.device_
    enc = plan.encode(tok, texts, classifier.manifest_["config"]["max_length"])
    cap = max_new_tokens or plan.max_answer_tokens()
    gcfg = GenerationConfig(
        max_new_tokens=cap, do_sample=False, num_beams=1, eos_token_id=plan.eos_ids, pad_token_id=plan.pad_id
    )
    module.eval()
    answers = [""] * len(texts)
    todo = [i for i in np.argsort([-len(x) for x in enc.ids], kind="stable") if not empty[i]]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="doc", desc="generating", dynamic_ncols=True, file=sys.stderr)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    for s in range(0, len(todo), batch_size):
        idx = todo[s : s + batch_size]
        width = max(len(enc.ids[i]) for i in idx)
        ids = torch.full((len(idx), width), plan.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for k, i in enumerate(idx):  # left padding: every row's answer starts at the same column
            ids[k, width - len(enc.ids[i]) :] = torch.tensor(enc.ids[i])
            mask[k, width - len(enc.ids[i]) :] = 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast), _fp32_logits(module):
            out = module.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gcfg)
        for k, i in enumerate(idx):
            answers[i] = tok.decode(out[k, width:], skip_special_tokens=True)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    statuses, values = [], []
    for a, e in zip(answers, empty):
        st, v = (EMPTY_TEXT, None) if e else read_answer(spec, a)
        statuses.append(st)
        values.append(v)
    cols = {
        "id": table.column("id"),
        "answer": pa.array([None if e else a for a, e in zip(answers, empty)], type=pa.string()),
    }
    if spec.kind == "single":
        cols["label"] = pa.array(
            [spec.decode_value(v) if v is not None else None for v in values], type=spec.arrow_type()
        )
    elif spec.kind == "multi":
        cols["labels"] = pa.array(
            [[spec.decode_value(c) for c in v] if v is not None else None for v in values],
            type=pa.list_(spec.arrow_type()),
        )
    else:
        typ = pa.list_(pa.struct([("dimension", pa.string()), ("level", pa.string()), ("confidence", pa.float64())]))
        cols["labels"] = pa.array(
            [
                [{"dimension": d, "level": lv, "confidence": None} for d, lv in v.items()] if v is not None else None
                for v in values
            ],
            type=typ,
        )
    cols["status"] = pa.array(statuses, type=pa.string())
    cols["truncated"] = pa.array(enc.truncated & ~empty)
    counts = summarize(statuses)
    out = pa.table(cols).replace_schema_metadata({"fineclass.generation": json.dumps(counts)})
    bad = counts["unparseable"] + counts["invalid_label"]
    if warn and bad:
        warn_user(
            f"fineclass: of {counts['n']} generated answers, {counts['unparseable']} could not be parsed "
            f"and {counts['invalid_label']} named labels outside the label set; those rows have that "
            f"status and no label (nothing was mapped to a nearby label)."
        )
    return out


def generation_summary(table: pa.Table) -> dict:
    """The counts of a table returned by ``generate()``.

    Args:
        table: what ``generate()`` returned.

    Returns:
        ``{"n", "ok", "unparseable", "invalid_label", "empty_text"}``.
    """
    meta = table.schema.metadata or {}
    raw = meta.get(b"fineclass.generation")
    if raw is None:
        return summarize(table.column("status").to_pylist())
    return json.loads(raw)
