"""Export a generative classifier to GGUF: merge, convert with llama.cpp's converter, quantize, check fidelity.

``export_gguf(clf, "deploy", quant=["f16", "q8_0", "q4_k_m"])`` writes, into a new folder (built under a
temporary name and renamed when complete, so a half-written export never looks finished):

- ``model-<quant>.gguf``: the merged weights with the tokenizer and chat template the model was trained with,
  quantized by llama.cpp's ``llama_model_quantize``; its metadata holds ``fineclass.task_sha256``;
- ``model-<quant>.json``: the sidecar (label set, prompt, answer form, thresholds, the prompt's token ids, the
  source model and its hash, the file's size and SHA-256);
- ``tokenizer/``: the model's tokenizer files, so that scoring tokenizes exactly as in training;
- ``fidelity.json``: when a fidelity check ran, its table (see ``fineclass.fidelity``).

The conversion runs llama.cpp's own ``convert_hf_to_gguf.py`` (found by ``tools.converter_dir``) in a
subprocess, from an intermediate merged safetensors folder (``export_merged``), to a 32-bit GGUF for models up
to 2B parameters (16-bit above that, or bf16 when the weights are bf16), which is then quantized to each file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .._fs import atomic_folder
from ..errors import FineclassError, preview, warn_user
from ..ledger import sha256_file
from ..manifest import now, write_json_atomic
from ..methods.generative import export_merged, generative_plan
from ..methods.generative.forward import model_parts
from .classifier import SIDECAR_FORMAT, TASK_KEY, plan_tokens, sidecar_path, task_fields, task_hash
from .fidelity import fidelity
from .runtime import Runtime, default_threads
from .tools import CONVERTER, bindings, converter_dir, convertible_architectures, llama_cpp_version, python_child_env

# fineclass's quantization names -> llama.cpp's file types (LLAMA_FTYPE_MOSTLY_<NAME>)
QUANTS = (
    "f32",
    "f16",
    "bf16",
    "q8_0",
    "q6_k",
    "q5_k_m",
    "q5_k_s",
    "q5_0",
    "q4_k_m",
    "q4_k_s",
    "q4_0",
    "q3_k_m",
    "q2_k",
)
ANSWER_FORMS = {
    "single": "Answer = [code]",
    "multi": "Answer = [code, code]",
    "dimlevel": "JSON dictionary {dimension: level} of the dimensions present",
}
_BIG_MODEL = 2e9  # above this many parameters the intermediate GGUF is 16-bit, not 32-bit


def _check_quants(quant: Any) -> list[str]:
    """``quant`` as a list of known names (one name, or several, comma-separated or in a list)."""
    items = [quant] if isinstance(quant, str) else list(quant) if isinstance(quant, (list, tuple)) else None
    if items is None:
        raise FineclassError(
            f"`quant` must be a quantization name or a list of them ({', '.join(QUANTS)}); got {type(quant).__name__}.",
            "quant",
        )
    names = [q.strip().lower() for item in items for q in str(item).split(",") if q.strip()]
    bad = [q for q in names if q not in QUANTS]
    if bad or not names:
        raise FineclassError(
            f"`quant`: {preview(bad) if bad else 'nothing'} is not a quantization fineclass knows; "
            f"choose from {', '.join(QUANTS)} (q4_k_m is the paper's).",
            "quant",
        )
    return list(dict.fromkeys(names))


def _architectures(classifier) -> list[str]:
    return list(getattr(model_parts(classifier.module_)[0].config, "architectures", None) or [])


def _intermediate_type(classifier) -> str:
    lm = model_parts(classifier.module_)[0]
    dtypes = {p.dtype for p in lm.parameters()}
    n = sum(p.numel() for p in lm.parameters())
    if torch.bfloat16 in dtypes:
        return "bf16"
    return "f32" if n <= _BIG_MODEL else "f16"


def convert(hf_folder: Path, out: Path, outtype: str, threads: int) -> None:
    """Run llama.cpp's converter on a Hugging Face folder (subprocess; its own gguf-py first on the path).

    Args:
        hf_folder: a merged Hugging Face model folder (``export_merged``).
        out: the GGUF file to write.
        outtype: ``f32``, ``f16`` or ``bf16``.
        threads: CPU threads.

    Raises:
        FineclassError: naming ``classifier`` when the converter fails or does not know the tokenizer.
    """
    where = converter_dir("format")
    env = python_child_env()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(where / "gguf-py"), str(where)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false",
            "TQDM_DISABLE": "1",
        }
    )
    cmd = [sys.executable, str(where / CONVERTER), str(hf_folder), "--outfile", str(out), "--outtype", outtype]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        log = (done.stderr or "") + (done.stdout or "")
        tail = "\n".join(line for line in log.strip().splitlines()[-6:])
        if "pre-tokenizer was not recognized" in log:
            raise FineclassError(
                f"`classifier`: llama.cpp's converter does not know this model's tokenizer (its BPE "
                f"pre-tokenizer is not in the converter's list), so the GGUF would tokenize "
                f"differently from training. Use a model of a family llama.cpp supports, or "
                f"format='safetensors'.\n{tail}",
                "classifier",
            )
        raise FineclassError(
            f"`classifier`: llama.cpp's converter failed (exit {done.returncode}):\n{tail}", "classifier"
        )


def _quantize(source: Path, out: Path, quant: str, task_sha256: str, threads: int) -> None:
    """``llama_model_quantize`` from ``source`` to ``out``, adding the task hash to the file's metadata."""
    lib = bindings("quant")
    params = lib.llama_model_quantize_default_params()
    params.ftype = lib.LLAMA_FTYPE_ALL_F32 if quant == "f32" else getattr(lib, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = int(threads)
    kv = (lib.llama_model_kv_override * 2)()  # ends with an empty key
    kv[0].tag = lib.LLAMA_KV_OVERRIDE_TYPE_STR
    kv[0].key = TASK_KEY.encode()
    kv[0].value.val_str = task_sha256.encode()
    params.kv_overrides = ctypes.cast(kv, ctypes.POINTER(lib.llama_model_kv_override))
    rc = lib.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.exists():
        raise FineclassError(f"`quant`: llama.cpp could not quantize the model to {quant} (code {rc}).", "quant")


def export_gguf(
    classifier,
    path: str | Path,
    quant: Any = "q4_k_m",
    *,
    data: Any = "validation",
    text: str = "text",
    label: Any = None,
    id: str | None = None,
    name: str = "model",
    overwrite: bool = False,
    threads: int | None = None,
    bootstrap: int = 1000,
) -> str:
    """Export a generative classifier as GGUF files for llama.cpp, with a sidecar each, and check their fidelity.

    Args:
        classifier: a fitted or loaded generative Classifier (or a zero-shot one).
        path: the output folder (written under a temporary name, then renamed: never half-written).
        quant: one quantization or several (``"q4_k_m"``, ``["f16", "q8_0", "q4_k_m"]``, ``"q8_0,q4_k_m"``);
            names in ``QUANTS``.
        data: the documents of the fidelity check: ``"validation"`` (default: the validation split kept in memory
            by ``train()``; skipped with a warning when there is none, e.g. after ``load()``), a table or file,
            or None for no check.
        text: the text column of ``data``.
        label: the column of human codes in ``data``, for the metric (default: ``label`` when it exists).
        id: the id column of ``data``.
        name: the files' stem (``<name>-<quant>.gguf``).
        overwrite: replace an existing GGUF export in ``path``.
        threads: CPU threads for conversion, quantization and the check (default: torch's setting).
        bootstrap: resamples of the fidelity check's paired bootstrap.

    Returns:
        The folder, as a string.

    Raises:
        FineclassError: an unknown ``quant``; not a generative classifier; an architecture or tokenizer llama.cpp's
            converter cannot convert; ``path`` exists (without ``overwrite``) or holds something else;
            llama-cpp-python or its converter missing (the message says how to install them).

    Example:
        >>> fineclass.export(clf, "deploy", format="gguf", quant=["q8_0", "q4_k_m"])  # doctest: +SKIP
        'deploy'
    """
    quants = _check_quants(quant)
    plan = generative_plan(classifier, torch_module=True)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
        raise FineclassError(f"`name` must be a plain file stem such as 'model'; got {name!r}.", "name")
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        raise FineclassError(
            f"`path` {str(path)!r} names a file; pass a folder: the export writes the .gguf files, "
            f"their .json sidecars and the tokenizer into it.",
            "path",
        )
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise FineclassError(
                f"`path` {str(path)!r} exists and is not empty; pass overwrite=True or choose another folder.", "path"
            )
        if not path.is_dir() or not any(path.glob("*.gguf")) or (path / "fineclass.json").exists():
            raise FineclassError(
                f"`path` {str(path)!r} holds files that are not a GGUF export; refusing to overwrite them.", "path"
            )
    where = converter_dir("format")
    archs = _architectures(classifier)
    known = convertible_architectures(str(where))
    if known and not any(a in known for a in archs):
        raise FineclassError(
            f"`classifier`: its model's architecture {preview(archs) or '(none recorded)'} is not one llama.cpp's "
            f"converter (llama-cpp-python {llama_cpp_version()}) can convert to GGUF. Export it with "
            f"format='safetensors' (for vLLM), or fine-tune a model of a family llama.cpp supports (Llama, "
            f"Qwen2/3, Mistral, Gemma, Phi-3, SmolLM2...).",
            "classifier",
        )
    threads = int(threads) if threads else default_threads()
    spec, manifest = classifier.spec_, classifier.manifest_
    fields = task_fields(spec, plan, classifier.thresholds_, manifest["config"]["max_length"])
    digest = task_hash(fields)
    t0 = time.time()
    with atomic_folder(path) as tmp:
        merged = tmp / "_merged"
        export_merged(classifier, merged)
        outtype = _intermediate_type(classifier)
        base = tmp / f"_base-{outtype}.gguf"
        convert(merged, base, outtype, threads)
        shutil.rmtree(merged)
        classifier.tokenizer_.save_pretrained(str(tmp / "tokenizer"))
        source = {
            "model": str(classifier.model),
            "model_hash": manifest.get("model_hash"),
            "finetune": manifest.get("finetune"),
            "fingerprint": manifest.get("fingerprint"),
            "trained_at": manifest.get("trained_at"),
            "n_train": manifest.get("n_train"),
            "architectures": archs,
        }
        files = []
        for q in quants:
            out = tmp / f"{name}-{q}.gguf"
            _quantize(base, out, q, digest, threads)
            runtime = Runtime(out, threads, "path")  # a file llama.cpp cannot read again fails the export
            if runtime.meta(TASK_KEY) != digest:
                raise FineclassError(
                    f"`quant`: the {q} file does not carry the task hash; llama.cpp dropped it.", "quant"
                )
            description = runtime.description()
            runtime.close()
            write_json_atomic(
                sidecar_path(out),
                {
                    "fineclass_gguf": SIDECAR_FORMAT,
                    "file": out.name,
                    "quant": q,
                    "bytes": out.stat().st_size,
                    "sha256": sha256_file(out),
                    "llama_cpp": description,
                    "task_sha256": digest,
                    **fields,
                    "tokens": plan_tokens(plan),
                    "tokenizer": "tokenizer",
                    "answer_form": ANSWER_FORMS[spec.kind],
                    "example_user_message": plan.template.replace("{text}", "<the document>"),
                    "zero_shot": bool(manifest.get("zero_shot")),
                    "source": source,
                    "intermediate": outtype,
                    "exported_at": now(),
                    "versions": {"llama_cpp_python": llama_cpp_version(), **(manifest.get("versions") or {})},
                },
            )
            files.append(out)
        base.unlink()
        check = _fidelity_data(classifier, data)
        if check is not None:
            report = fidelity(
                classifier, files, check, text=text, label=label, id=id, threads=threads, bootstrap=bootstrap, warn=True
            )
            write_json_atomic(tmp / "fidelity.json", report.to_dict())
    print(
        f"fineclass: exported {len(quants)} GGUF file(s) ({', '.join(quants)}) to {path} in {time.time() - t0:.0f} s",
        file=sys.stderr,
    )
    return str(path)


def _fidelity_data(classifier, data):
    """The documents of the fidelity check: the validation split kept by train(), a given table, or none."""
    if data is None:
        return None
    if isinstance(data, str) and data == "validation":
        kept = getattr(classifier, "validation_", None)
        if kept is None or kept.num_rows == 0:
            warn_user(
                "fineclass: no fidelity check was run on the GGUF export: this classifier holds no validation "
                "split (it is kept in memory by train() only). Pass `data=` with held-out documents, or run "
                "fineclass.fidelity() on the export."
            )
            return None
        return kept
    return data
