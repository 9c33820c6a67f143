"""Zero-shot: a generative Classifier that prompts a model without training, scored like a trained one.

(A module named ``zero_shot`` would be hidden by the root function ``fineclass.zero_shot``; hence ``zeroshot``.)
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import pyarrow as pa

from .classifier import Classifier
from .config import TrainConfig
from .errors import FineclassError
from .labels import KINDS, LabelSpec, canon, read_codebook, split_codebook, value_type
from .manifest import hash_model_folder, now, versions
from .methods.base import check_no_pickle, inference_dtype, pick_device, quiet_transformers
from .methods.generative import GenerativeMethod, Plan
from .methods.generative import generate as free_generation
from .methods.generative.loading import check_causal, load_causal_lm, load_tokenizer
from .models import resolve
from .prompts import default_template


def _zero_shot_spec(labels, codebook, kind: str, levels) -> LabelSpec:
    if kind not in KINDS:
        raise FineclassError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}.", "kind")
    book = read_codebook(codebook)
    if labels is None:
        if not book:
            raise FineclassError(
                "zero-shot needs the label set: pass `labels=` (the class codes, or the dimensions "
                "for kind='dimlevel') or a `codebook=` with one entry per class.",
                "labels",
            )
        labels = list(book)
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise FineclassError(f"`labels` must be a list of class codes; got {type(labels).__name__}.", "labels")
    labels = list(labels)
    if kind != "dimlevel" and levels is not None:
        raise FineclassError("`levels` is only used with kind='dimlevel'.", "levels")
    names, descriptions = split_codebook(book)
    vtype = value_type(labels) if kind != "dimlevel" else "str"
    try:
        return LabelSpec(
            kind=kind,
            classes=[canon(v) for v in labels],
            levels=list(levels) if levels else None,
            names=names,
            descriptions=descriptions,
            value_type=vtype,
        )
    except FineclassError as e:
        arg = e.argument if e.argument in ("codebook", "levels") else "labels"
        raise FineclassError(str(e).replace("the `label` column", "`labels`"), arg) from None


def zero_shot_classifier(
    model: str = "smollm2-135m",
    *,
    labels: Sequence[Any] | None = None,
    codebook: Any = None,
    kind: str = "single",
    levels: Sequence[str] | None = None,
    prompt: str | None = None,
    max_length: int = 256,
    threshold: float = 0.5,
    device: str = "auto",
    scoring: str = "prefix",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
):
    """A Classifier that prompts ``model`` without training; it predicts, saves and loads like a trained one.

    Args:
        model: a causal language model (an alias, a folder or a hub id).
        labels: the class codes (the dimensions for ``kind="dimlevel"``), or taken from ``codebook``.
        codebook: ``{code: name}``, ``{code: {"name": ..., "description": ...}}``, a JSON file or a table.
        kind: ``"single"``, ``"multi"`` or ``"dimlevel"``.
        levels: the ordered levels (dimlevel).
        prompt: a template with the slot ``{text}`` (and optionally ``{codebook}``, ``{labels}``, ``{levels}``).
        max_length: the most tokens of a document in the prompt.
        threshold: the presence threshold for the multi-label and dimension->level shapes.
        device: see ``TrainConfig.device``.
        scoring: ``"prefix"`` scores each label's tokens up to the first one that tells it apart from the other
            labels (the rest would be forced by constrained decoding); ``"full"`` scores the whole answer.
        trust_remote_code: let transformers run the model's own code.
        allow_pickle: accept pickle weight files.

    Returns:
        A fitted generative Classifier.

    Raises:
        FineclassError: naming the argument at fault (``labels``, ``kind``, ``threshold``, ``model``...).

    Example:
        >>> clf = zero_shot_classifier("smollm2-135m", labels=["pos", "neg"])  # doctest: +SKIP
    """
    t0 = time.time()
    spec = _zero_shot_spec(labels, codebook, kind, levels)
    if not (isinstance(threshold, (int, float)) and 0 < float(threshold) < 1):
        raise FineclassError(f"`threshold` must be a number in (0, 1); got {threshold!r}.", "threshold")
    cfg = TrainConfig(prompt=prompt, max_length=max_length, device=device, epochs=1)
    path = resolve(model)
    dev = pick_device(device)
    quiet_transformers()
    check_no_pickle(path, allow_pickle, "model")
    check_causal(path, trust_remote_code)
    tok = load_tokenizer(path, trust_remote_code)
    plan = Plan(tok, spec, prompt if prompt is not None else default_template(spec), argument="labels", scoring=scoring)
    module = load_causal_lm(path, inference_dtype(dev), trust_remote_code).to(dev).eval()
    module._fineclass_zero_shot = True
    module._fineclass_generative = plan.to_dict()
    method = GenerativeMethod()
    method.plan = plan
    cfg = cfg.resolved(prompt=plan.template)
    thresholds = {} if kind == "single" else {"presence": float(threshold)}
    manifest = {
        "method": "generative",
        "zero_shot": True,
        "model": str(model),
        "model_resolved": path,
        "model_hash": hash_model_folder(path),
        "finetune": "none",
        "spec": spec.to_dict(),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "thresholds": thresholds,
        "history": [],
        "n_train": 0,
        "n_validation": 0,
        "device": str(dev),
        "trained_at": now(),
        "seconds": round(time.time() - t0, 1),
        "versions": versions(),
        "generative": plan.to_dict(),
    }
    clf = Classifier(model=model, method="generative", config=cfg, trust_remote_code=trust_remote_code)
    clf._adopt(
        method=method,
        module=module,
        tokenizer=tok,
        spec=spec,
        device=dev,
        thresholds=thresholds,
        manifest=manifest,
        history=[],
    )
    return clf


def zero_shot(
    data: Any,
    model: str = "smollm2-135m",
    labels: Sequence[Any] | None = None,
    codebook: Any = None,
    kind: str = "single",
    text: str = "text",
    id: str | None = None,
    prompt: str | None = None,
    *,
    levels: Sequence[str] | None = None,
    generate: bool = False,
    max_length: int = 256,
    threshold: float = 0.5,
    batch_tokens: int | None = None,
    device: str = "auto",
    scoring: str = "prefix",
    trust_remote_code: bool = False,
    progress: bool = False,
) -> pa.Table:
    """Classify ``data`` by prompting ``model`` without training.

    Args:
        data: the documents (any table or path).
        model: a causal language model (an alias, a folder or a hub id).
        labels: the class codes (dimensions for dimlevel), or taken from ``codebook``.
        codebook: names and descriptions of the classes.
        kind: ``"single"``, ``"multi"`` or ``"dimlevel"``.
        text: the text column.
        id: the id column.
        prompt: a template with the slot ``{text}``.
        levels: the ordered levels (dimlevel).
        generate: free generation parsed strictly (as ``generate()``), instead of scoring.
        max_length: the most tokens of a document in the prompt.
        threshold: the presence threshold (multi, dimlevel).
        batch_tokens: tokens per batch (scoring).
        device: see ``TrainConfig.device``.
        scoring: see :func:`zero_shot_classifier`.
        trust_remote_code: let transformers run the model's own code.
        progress: show a progress bar.

    Returns:
        The table ``Classifier.predict`` returns (probabilities from scoring every label; for single-label they sum
        to one per document), or with ``generate=True`` the table ``generate()`` returns.

    Raises:
        FineclassError: naming the argument at fault.

    Example:
        >>> fineclass.zero_shot({"text": ["great film"]}, labels=["pos", "neg"])  # doctest: +SKIP
    """
    clf = zero_shot_classifier(
        model,
        labels=labels,
        codebook=codebook,
        kind=kind,
        levels=levels,
        prompt=prompt,
        max_length=max_length,
        threshold=threshold,
        device=device,
        scoring=scoring,
        trust_remote_code=trust_remote_code,
    )
    if generate:
        return free_generation(clf, data, text=text, id=id, progress=progress)
    return clf.predict(data, text=text, id=id, batch_tokens=batch_tokens, progress=progress)
