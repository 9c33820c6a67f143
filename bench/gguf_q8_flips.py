"""Why do GGUF files disagree with torch fp32? A diagnosis on the work folder of ``bench_gguf.py``.

The fidelity run of ``bench_gguf.py`` (bench/results/gguf-fidelity-n400.log) found q8_0 agreeing with torch fp32 on
95.5% of 400 reviews, f16 on 99.75%. This script separates the possible causes on a systematic sample of the same
held-out reviews, all in one run:

- ``f32``: the same merged model exported to a 32-bit GGUF and scored by llama.cpp. Both engines then compute in
  fp32 from the same token ids (the llama.cpp engine is fed the Hugging Face tokenizer's ids, head included), so
  any difference here would be a prompt, BOS, position or scoring mismatch between the engines.
- ``f16``, ``q8_0``, ``q4_k_m``: the exported files (llama.cpp also rounds the activations of a q8_0/q4_k matrix
  product to 8 bits, and those of an f16 one to 16).
- ``torch, weights rounded to q8_0``: torch fp32 with every linear layer's weights (the tied embedding/output
  matrix included) rounded as q8_0 rounds them (blocks of 32, absmax/127), activations in fp32: the share of q8_0's
  change that the weights explain alone.

For each: label agreement with torch fp32, the change of the logit of P(positive) (mean, standard deviation,
largest), and how many documents torch itself puts within that largest change of the decision boundary (the only
ones that can flip): a model whose margins are wider than the change cannot flip at all.

    python bench/gguf_q8_flips.py --folder /tmp/gg/bench --every 4 --threads 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch

import fineclass
from fineclass.llamacpp import export_gguf
from fineclass.methods.generative import merge_for_inference


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def _round_q8_0(w: torch.Tensor) -> torch.Tensor:
    blocks = w.reshape(-1, 32)
    step = blocks.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127
    return (torch.round(blocks / step) * step).reshape(w.shape)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", required=True, help="bench_gguf.py's work folder (model/, deploy/, held.parquet)")
    ap.add_argument("--every", type=int, default=4, help="take every k-th held-out review")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    held = pl.read_parquet(folder / "held.parquet")
    data = held.gather_every(args.every).select(["id", "text"])
    print(f"{data.height} of {held.height} held-out reviews (every {args.every}th)", flush=True)

    t0 = time.time()
    ref = fineclass.load(folder / "model", device="cpu")
    merge_for_inference(ref)
    p_ref = ref.predict(data).column("p_positive").to_numpy()
    z_ref = _logit(p_ref)
    print(
        f"torch fp32: {time.time() - t0:.0f} s; P(positive) within 0.45-0.55 on {np.mean(abs(p_ref - 0.5) < 0.05):.0%}"
        f" of the reviews, median |logit| {np.median(abs(z_ref)):.3f}",
        flush=True,
    )

    f32 = folder / "deploy-f32"
    if not f32.exists():
        t0 = time.time()
        export_gguf(ref, f32, "f32", data=None, threads=args.threads)
        print(f"exported f32 in {time.time() - t0:.0f} s", flush=True)
    files = [("f32", f32 / "model-f32.gguf")] + [
        (q, folder / "deploy" / f"model-{q}.gguf") for q in ("f16", "q8_0", "q4_k_m")
    ]

    print(
        "\n| model | agreement | flipped | mean change of logit P(pos) | sd | largest |"
        " reviews within the largest change |"
    )
    print("|---|---|---|---|---|---|---|")

    def row(name: str, p: np.ndarray) -> None:
        dz = _logit(p) - z_ref
        flips = int(np.sum((p > 0.5) != (p_ref > 0.5)))
        near = int(np.sum(abs(z_ref) < abs(dz).max()))
        print(
            f"| {name} | {1 - flips / len(p):.3f} | {flips} | {dz.mean():+.4f} | {dz.std():.4f} | {abs(dz).max():.4f} |"
            f" {near} |",
            flush=True,
        )

    for name, file in files:
        g = fineclass.load(file, threads=args.threads)
        row(f"llama.cpp {name}", g.predict(data).column("p_positive").to_numpy())
        g.module_.close()
    with torch.no_grad():
        for layer in ref.module_.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(_round_q8_0(layer.weight))
    row("torch fp32, weights rounded to q8_0", ref.predict(data).column("p_positive").to_numpy())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
