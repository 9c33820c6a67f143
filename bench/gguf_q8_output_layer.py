"""Is q8_0's shift the output layer's rounding? q8_0 and q4_k_m with the tied embedding/output matrix kept at f16.

Follows bench/gguf_q8_flips.py on the same work folder and sample (every 4th held-out review). The reference is
the f32 GGUF that script exported (it reproduces torch fp32 exactly there, so it stands in for torch here and is
faster). The variants are quantized from the f16 export by ``llama_model_quantize`` with
``token_embedding_type = F16`` (SmolLM2 ties its output layer to the token embeddings, so this keeps the output
layer at 16 bits too); they carry the f16 file's task hash and sidecar, so ``fineclass.load`` reads them.

    python bench/gguf_q8_output_layer.py --folder /tmp/gg/bench --every 4 --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch

import fineclass
from fineclass.llamacpp.classifier import TASK_KEY
from fineclass.llamacpp.tools import bindings


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def variant(folder: Path, quant: str, threads: int) -> Path:
    """``quant`` with the token embeddings (and so the tied output layer) at f16, beside its sidecar."""
    src = folder / "deploy" / "model-f16.gguf"
    dst = folder / "variants" / f"{quant}-embf16.gguf"
    if dst.exists():
        return dst
    dst.parent.mkdir(exist_ok=True)
    side = json.loads(src.with_suffix(".json").read_text())
    lib = bindings()
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = threads
    params.token_embedding_type = lib.GGML_TYPE_F16
    kv = (lib.llama_model_kv_override * 2)()
    kv[0].tag = lib.LLAMA_KV_OVERRIDE_TYPE_STR
    kv[0].key = TASK_KEY.encode()
    kv[0].value.val_str = side["task_sha256"].encode()
    params.kv_overrides = ctypes.cast(kv, ctypes.POINTER(lib.llama_model_kv_override))
    assert lib.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0
    dst.with_suffix(".json").write_text(json.dumps({**side, "file": dst.name}))
    if not (dst.parent / "tokenizer").exists():
        shutil.copytree(folder / "deploy" / "tokenizer", dst.parent / "tokenizer")
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    data = pl.read_parquet(folder / "held.parquet").gather_every(args.every).select(["id", "text"])

    def run(file: Path) -> tuple[np.ndarray, float]:
        g = fineclass.load(file, threads=args.threads)
        t0 = time.time()
        p = g.predict(data).column("p_positive").to_numpy()
        g.module_.close()
        return p, time.time() - t0

    ref, s = run(folder / "deploy-f32" / "model-f32.gguf")
    print(f"reference llama.cpp f32 (= torch fp32): {s:.0f} s", flush=True)
    files = [
        ("q8_0 (token_embd/output q8_0)", folder / "deploy" / "model-q8_0.gguf"),
        ("q8_0 with token_embd/output f16", variant(folder, "q8_0", args.threads)),
        ("q4_k_m (output q6_k)", folder / "deploy" / "model-q4_k_m.gguf"),
        ("q4_k_m with token_embd/output f16", variant(folder, "q4_k_m", args.threads)),
    ]
    print("| file | MB | agreement | mean change of logit P(pos) | sd | largest | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, file in files:
        p, s = run(file)
        dz = _logit(p) - _logit(ref)
        print(
            f"| {name} | {file.stat().st_size / 1e6:.0f} | {np.mean((p > 0.5) == (ref > 0.5)):.3f} | {dz.mean():+.4f} |"
            f" {dz.std():.4f} | {abs(dz).max():.4f} | {s:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
