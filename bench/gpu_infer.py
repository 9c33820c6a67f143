"""GPU inference benchmark: documents/s and share of the device's bf16 FLOP rate for classification.

Sequence-classification models of real shapes (Qwen2.5-0.5B, Llama-3.2-1B, Llama-3.1-8B; random weights,
configs built here, nothing downloaded) score documents of realistic lengths (log-normal, median 160 tokens,
capped at --max-length) three ways:

- ``batch8``:  batches of 8 documents in input order, padded to the longest (the usual loop);
- ``sorted``:  documents sorted by length and cut into token-budget batches (rows x longest row <= budget),
               as ``fineclass.infer`` does;
- ``packed``:  no padding at all: documents packed end to end into rows of up to --budget tokens, positions
               restarting at each document, attention kept inside each document by a variable-length kernel
               (``torch.nn.attention.varlen.varlen_attn``, or flash-attn's ``flash_attn_varlen_func``), and the
               classification head applied to each document's last token;
- ``fineclass``: the library's own path, ``fineclass.scoring.Scorer.score_ids`` (length-sorted token-budget batches,
               bf16 autocast, probabilities back on the CPU), on the same model and documents.

After the models, an out-of-memory check caps the process's GPU memory (weights + --oom-headroom-gb) and asks
fineclass for 4x the token budget: it must halve the budget (with a warning) until batches fit, and return the
labels of the uncapped run.

The FLOP rate counts useful work only (no padding): per document 2 x (matmul parameters) x tokens plus causal
attention 2 x layers x tokens^2 x (heads x head_dim). The device's dense bf16 peak is looked up by name
(H100 SXM / H200: 989 TFLOP/s; H100 PCIe: 756) or given with --peak-tflops.

    python bench/gpu_infer.py                    # all three models on the GPU (under 5 minutes on an H100/H200)
    python bench/gpu_infer.py --models 8b --docs 4096
    python bench/gpu_infer.py --smoke            # tiny shapes on the CPU: checks that every path runs and agrees

Every mode's logits are compared with the sorted mode's (bf16 differences are expected to be small); ``--smoke``
exits non-zero when the packed path does not reproduce the padded one.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))  # a checkout without `pip install`

import numpy as np
import torch

SHAPES = {
    # Qwen2.5-0.5B
    "0.5b": dict(
        family="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
    ),
    # Llama-3.2-1B
    "1b": dict(
        family="llama",
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        tie_word_embeddings=True,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=131072,
    ),
    # Llama-3.1-8B
    "8b": dict(
        family="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        tie_word_embeddings=False,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=131072,
    ),
    # a few layers of hidden 64, for --smoke on a CPU
    "tiny": dict(
        family="llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=False,
        max_position_embeddings=2048,
    ),
    "tiny-qwen": dict(
        family="qwen2",
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=1200,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
    ),
}
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H20", 148.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
]
N_LABELS = 4


# ---------------------------------------------------------------------- models
def build_model(name: str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForSequenceClassification, LlamaConfig, Qwen2Config

    shape = dict(SHAPES[name])
    family = shape.pop("family")
    cfg_cls = LlamaConfig if family == "llama" else Qwen2Config
    cfg = cfg_cls(**shape, num_labels=N_LABELS, pad_token_id=0, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(cfg, dtype=dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if name.startswith("tiny"):  # larger random weights than the default init, so that logits differ clearly
        with torch.no_grad():
            model.score.weight.normal_(0, 0.5)
    return model


def matmul_params(model) -> int:
    """Parameters that cost 2 FLOPs per token: every Linear weight in the decoder plus the head."""
    base = model.base_model
    n = sum(m.weight.numel() for m in base.modules() if isinstance(m, torch.nn.Linear))
    return n + model.score.weight.numel()


def useful_flops(model, lengths: np.ndarray) -> float:
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    q_dim = cfg.num_attention_heads * head_dim
    lengths = lengths.astype(np.float64)
    return float(2 * matmul_params(model) * lengths.sum() + 2 * cfg.num_hidden_layers * q_dim * (lengths**2).sum())


# ---------------------------------------------------------------------- documents
def document_lengths(n: int, median: int, max_length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(math.log(median), 0.75, n)), 8, max_length).astype(np.int64)


def documents(lengths: np.ndarray, vocab: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (int(n),), generator=g) for n in lengths]  # 0 is the padding id


# ---------------------------------------------------------------------- batching
def token_budget_batches(lengths: np.ndarray, budget: int, max_rows: int = 1024) -> list[np.ndarray]:
    try:  # the library's own planner, when fineclass is importable here
        from fineclass.scoring import token_budget_batches as plan

        return plan(lengths, budget, max_rows)
    except ImportError:
        order = np.argsort(-lengths, kind="stable")
        out, s = [], 0
        while s < len(order):
            size = max(1, min(max_rows, budget // max(int(lengths[order[s]]), 1)))
            out.append(order[s : s + size])
            s += size
        return out


def packed_batches(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Documents in input order, filled into rows of at most ``budget`` tokens."""
    out, cur, used = [], [], 0
    for i, n in enumerate(lengths):
        if cur and used + n > budget:
            out.append(np.array(cur))
            cur, used = [], 0
        cur.append(i)
        used += int(n)
    if cur:
        out.append(np.array(cur))
    return out


def padded_logits(model, docs, idx, device) -> torch.Tensor:
    width = max(len(docs[i]) for i in idx)
    ids = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        ids[r, : len(docs[i])] = docs[i]
        mask[r, : len(docs[i])] = 1
    return model(
        input_ids=ids.to(device, non_blocking=True), attention_mask=mask.to(device, non_blocking=True)
    ).logits.float()


# ---------------------------------------------------------------------- variable-length attention
_VARLEN = {}


def varlen_kernel(device: torch.device):
    """The variable-length attention kernel to use on this device (name, function) or None."""
    if device.type != "cuda":
        return "sdpa-per-document (CPU check)", _varlen_reference
    try:
        from flash_attn import flash_attn_varlen_func

        def fa(q, k, v, cu, max_len, scale):
            return flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, softmax_scale=scale, causal=True)

        return "flash_attn.flash_attn_varlen_func", fa
    except ImportError:
        pass
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters

    def tv(q, k, v, cu, max_len, scale):
        kw = {"scale": scale}
        if "is_causal" in params:
            kw["is_causal"] = True
        elif "window_size" in params:
            kw["window_size"] = (-1, 0)
        else:
            raise RuntimeError("this torch's varlen_attn has no causal option")
        if k.shape[1] != q.shape[1]:
            if "enable_gqa" in params:
                kw["enable_gqa"] = True
            else:
                rep = q.shape[1] // k.shape[1]
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)

    return "torch.nn.attention.varlen.varlen_attn", tv


def _varlen_reference(q, k, v, cu, max_len, scale):
    """Per-document causal SDPA: slow, used to check the packed path on a CPU."""
    out = torch.empty_like(q)
    rep = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        qq = q[a:b].transpose(0, 1)
        kk = k[a:b].transpose(0, 1).repeat_interleave(rep, dim=0)
        vv = v[a:b].transpose(0, 1).repeat_interleave(rep, dim=0)
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=True, scale=scale).transpose(
            0, 1
        )
    return out


def _packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """A transformers attention function: query/key/value (1, heads, tokens, dim) -> (1, tokens, heads, dim)."""
    cu, max_len = _VARLEN["cu"], _VARLEN["max_len"]
    q = query[0].transpose(0, 1).contiguous()
    k = key[0].transpose(0, 1).contiguous()
    v = value[0].transpose(0, 1).contiguous()
    out = _VARLEN["fn"](q, k, v, cu, max_len, scaling)
    return out.unsqueeze(0), None


def enable_packing(device: torch.device):
    from transformers import AttentionInterface

    kernel = varlen_kernel(device)
    if kernel is None:
        return None
    _VARLEN["fn"] = kernel[1]
    AttentionInterface.register("fineclass_packed", _packed_attention)
    return kernel[0]


@contextlib.contextmanager
def packed_attention(model):
    before = model.config._attn_implementation
    model.set_attn_implementation("fineclass_packed")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def packed_logits(model, docs, idx, device) -> torch.Tensor:
    seqs = [docs[i] for i in idx]
    lens = torch.tensor([len(s) for s in seqs])
    ids = torch.cat(seqs).to(device, non_blocking=True)
    pos = torch.cat([torch.arange(n) for n in lens.tolist()]).to(device, non_blocking=True)
    cu = torch.zeros(len(seqs) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lens, 0)
    _VARLEN["cu"], _VARLEN["max_len"] = cu.to(device, non_blocking=True), int(lens.max())
    hidden = model.base_model(input_ids=ids[None], position_ids=pos[None]).last_hidden_state[0]
    last = hidden[(cu[1:] - 1).to(device).long()]
    return model.score(last).float()


# ---------------------------------------------------------------------- timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def library_scorer(model, device):
    """fineclass's own inference path (scoring.Scorer.score_ids: collate, bf16 autocast, OOM halving) around
    this model."""
    from types import SimpleNamespace

    from fineclass.labels import LabelSpec
    from fineclass.methods.head import HeadMethod
    from fineclass.scoring import Scorer

    scorer = Scorer(
        method=HeadMethod(),
        module=model,
        tokenizer=SimpleNamespace(pad_token_id=0),
        device=device,
        spec=LabelSpec(kind="single", classes=[f"c{i}" for i in range(N_LABELS)]),
        max_length=512,
    )
    return scorer, scorer.score_ids


def run_library(model, docs, lengths, args, device):
    """Time fineclass.scoring.Scorer.score_ids over the documents; probabilities come back on the CPU, in
    input order."""
    _, score_ids = library_scorer(model, device)
    ids = [d.tolist() for d in docs]
    score_ids(ids[:64], batch_tokens=args.budget)  # warm-up
    sync(device)
    t = time.perf_counter()
    probs = score_ids(ids, batch_tokens=args.budget)
    sync(device)
    seconds = time.perf_counter() - t
    batches = token_budget_batches(lengths, args.budget)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return seconds, torch.from_numpy(np.log(np.clip(probs, 1e-30, None))).float(), len(batches), padded


def oom_check(args, device) -> dict:
    """Cap this process's GPU memory so that the token budget cannot fit, and check that fineclass halves it
    (with a warning) and still returns the labels of an uncapped run."""
    import warnings

    device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    model = build_model(args.oom_model, device, torch.bfloat16)
    lengths = document_lengths(512, args.median, args.max_length, args.seed + 1)
    docs = [d.tolist() for d in documents(lengths, model.config.vocab_size, args.seed + 1)]
    _, score_ids = library_scorer(model, device)
    with torch.inference_mode():
        reference = score_ids(docs, batch_tokens=args.budget)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    weights = torch.cuda.memory_allocated(device)
    fraction = min(1.0, (weights + args.oom_headroom_gb * 2**30) / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    try:
        with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
            warnings.simplefilter("always")
            capped = score_ids(docs, batch_tokens=4 * args.budget)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    notes = [str(w.message) for w in caught if "out of memory" in str(w.message)]
    same = float((capped.argmax(1) == reference.argmax(1)).mean())
    row = {
        "model": args.oom_model,
        "check": "out-of-memory halving",
        "cap_gb": round(fraction * total / 2**30, 1),
        "budget_start": 4 * args.budget,
        "halvings": len(notes),
        "last_message": notes[-1] if notes else None,
        "label_agreement": same,
        "max_prob_diff": float(np.abs(capped - reference).max()),
    }
    print(
        f"\noom check ({args.oom_model}, memory capped at {row['cap_gb']} GB, budget {4 * args.budget}): "
        f"{len(notes)} halvings; labels agree with the uncapped run on {same:.1%}; "
        f"max |prob diff| {row['max_prob_diff']:.1e}" + (f"; last: {notes[-1]}" if notes else ""),
        flush=True,
    )
    del model
    torch.cuda.empty_cache()
    return row


def run_mode(mode, model, docs, lengths, args, device):
    if mode == "fineclass":
        with torch.inference_mode():
            return run_library(model, docs, lengths, args, device)
    if mode == "batch8":
        batches = [np.arange(s, min(s + 8, len(docs))) for s in range(0, len(docs), 8)]
        fn = padded_logits
    elif mode == "sorted":
        batches = token_budget_batches(lengths, args.budget)
        fn = padded_logits
    else:
        batches = packed_batches(lengths, args.budget)
        fn = packed_logits
    ctx = packed_attention(model) if mode == "packed" else contextlib.nullcontext()
    out = torch.empty((len(docs), N_LABELS), dtype=torch.float32, device=device)
    with ctx, torch.inference_mode():
        for b in batches[: args.warmup]:
            fn(model, docs, b, device)
        sync(device)
        t = time.perf_counter()
        for b in batches:
            out[torch.as_tensor(b, device=device)] = fn(model, docs, b, device)
        sync(device)
        seconds = time.perf_counter() - t
    padded = sum(len(b) * int(lengths[b].max()) for b in batches) if mode != "packed" else int(lengths.sum())
    return seconds, out.cpu(), len(batches), padded


def peak_tflops(device, override):
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["0.5b", "1b", "8b"], choices=list(SHAPES))
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["batch8", "sorted", "packed", "fineclass"],
        choices=["batch8", "sorted", "packed", "fineclass"],
    )
    ap.add_argument(
        "--oom-model",
        default="1b",
        choices=list(SHAPES),
        help="model for the out-of-memory check (GPU only; --no-oom-check skips it)",
    )
    ap.add_argument("--no-oom-check", dest="oom_check", action="store_false")
    ap.add_argument("--oom-only", action="store_true", help="run only the out-of-memory check")
    ap.add_argument(
        "--oom-headroom-gb",
        type=float,
        default=1.0,
        help="GPU memory left beside the weights in the out-of-memory check",
    )
    ap.add_argument("--docs", type=int, default=2048)
    ap.add_argument("--median", type=int, default=160, help="median document length in tokens")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--budget", type=int, default=65536, help="tokens per batch for sorted and packed modes")
    ap.add_argument("--warmup", type=int, default=3, help="batches run before timing")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU in fp32: a check that all runs")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    if args.smoke:
        device, dtype = torch.device("cpu"), torch.float32
        if args.models == ["0.5b", "1b", "8b"]:
            args.models = ["tiny", "tiny-qwen"]
        args.docs, args.median, args.max_length, args.budget, args.warmup = 48, 40, 200, 1024, 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU is visible; run with --smoke to check the script on a CPU", file=sys.stderr)
            return 2
        device, dtype = torch.device("cuda"), torch.bfloat16
        torch.backends.cuda.matmul.allow_tf32 = True
    kernel = enable_packing(device)
    peak = peak_tflops(device, args.peak_tflops)
    lengths = document_lengths(args.docs, args.median, args.max_length, args.seed)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {dev_name}; dtype {str(dtype).replace('torch.', '')}; peak {peak or '?'} TFLOP/s; "
        f"packed attention: {kernel or 'not available'}"
    )
    print(
        f"{args.docs} documents: median {int(np.median(lengths))} tokens, mean {lengths.mean():.0f}, "
        f"p90 {int(np.percentile(lengths, 90))}, max {lengths.max()}; token budget {args.budget}"
    )
    results, failures = [], []
    for name in [] if args.oom_only else args.models:
        t = time.perf_counter()
        model = build_model(name, device, dtype)
        docs = documents(lengths, model.config.vocab_size, args.seed)
        flops = useful_flops(model, lengths)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"\n{name}: {n_params / 1e9:.2f}B parameters ({matmul_params(model) / 1e9:.2f}B in matmuls), "
            f"built in {time.perf_counter() - t:.1f} s; {flops / args.docs / 1e9:.1f} GFLOP per document"
        )
        reference = None
        for mode in args.modes:
            if mode == "packed" and kernel is None:
                print(f"  {mode:>7}: skipped (no variable-length attention kernel here)")
                continue
            try:
                seconds, logits, n_batches, tokens = run_mode(mode, model, docs, lengths, args, device)
            except torch.cuda.OutOfMemoryError as e:
                print(f"  {mode:>7}: out of memory ({e})")
                torch.cuda.empty_cache()
                continue
            except Exception as e:  # a kernel this torch or GPU lacks: report it, go on with the other modes
                if args.smoke:
                    raise
                print(f"  {mode:>7}: failed ({type(e).__name__}: {str(e)[:300]})")
                failures.append(f"{name}/{mode}: {type(e).__name__}")
                continue
            rate = args.docs / seconds
            share = flops / seconds / (peak * 1e12) if peak else None
            row = {
                "model": name,
                "mode": mode,
                "docs": args.docs,
                "seconds": round(seconds, 3),
                "docs_per_second": round(rate, 1),
                "flop_share": round(share, 3) if share else None,
                "batches": n_batches,
                "padding_share": round(1 - lengths.sum() / tokens, 3),
                "device": dev_name,
            }
            if reference is None:
                reference = logits
            else:
                # fineclass returns probabilities (compared as log-probabilities), the other modes logits
                ref = reference.log_softmax(1) if mode == "fineclass" else reference
                row["max_logit_diff"] = float((logits - ref).abs().max())
                row["label_agreement"] = float((logits.argmax(1) == reference.argmax(1)).float().mean())
            if device.type == "cuda":
                row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
                torch.cuda.reset_peak_memory_stats()
            results.append(row)
            extra = (
                (
                    f"  max |logit diff| vs {args.modes[0]} {row['max_logit_diff']:.2e}, labels agree "
                    f"{row['label_agreement']:.1%}"
                )
                if "max_logit_diff" in row
                else ""
            )
            share_s = f"{share:6.1%} of bf16 peak" if share else "peak unknown"
            print(
                f"  {mode:>7}: {rate:9.1f} docs/s  {share_s}  {n_batches} batches, "
                f"{row['padding_share']:.0%} padding{extra}",
                flush=True,
            )
            if args.smoke and "max_logit_diff" in row and row["max_logit_diff"] > 1e-3:
                failures.append(f"{name}/{mode}: logits differ by {row['max_logit_diff']:.2e}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.oom_check and device.type == "cuda":
        try:
            results.append(oom_check(args, device))
        except Exception as e:
            print(f"oom check failed: {type(e).__name__}: {str(e)[:300]}")
            failures.append(f"oom check: {type(e).__name__}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
