"""GPU throughput of the generative method: LoRA fine-tuning and constrained scoring, 1B and 8B Llama shapes.

    python bench/gpu_generative.py                 # Llama-3.2-1B and Llama-3.1-8B shapes, about 3-4 minutes
    python bench/gpu_generative.py --models 8b --train-seconds 60
    python bench/gpu_generative.py --smoke         # tiny shapes on CPU: checks that the script runs

The models have random weights of the real shapes (built from a config in memory; nothing is downloaded). The
code measured is fineclass's own: GenerativeMethod.loss (prompt head computed once per batch, answer-token loss)
and GenerativeMethod.probabilities (every label continuation scored in one pass), on a CAP-style task: 21 policy
topics with names in the prompt's codebook, documents of about --doc-tokens tokens. For reference it also times
one `generate()` call per document (the paper's way; the anchor on an H200 with plain transformers was 2.7
documents/s for 8B). Scoring and generation run on the LoRA-merged bf16 model (as merge_for_inference leaves it).

FLOPs: 2 N per token processed for a forward pass (N = parameters without the embedding table; the output layer
is counted where it is applied), 4 N per token for LoRA training (forward plus the backward pass through the
activations; the frozen weights get no gradients), plus attention (4 x layers x width x context per token
forward). Reported as a fraction of the GPU's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))  # a checkout without `pip install`

import numpy as np
import torch

SHAPES = {
    # Llama-3.2-1B and Llama-3.1-8B (config.json values)
    "1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
        rope_theta=500000.0,
    ),
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
        rope_theta=500000.0,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=2048,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    ),
}
PEAK_BF16 = [
    ("H200", 989.4e12),
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10", 125e12),
    ("L4", 121e12),
]
CAP = {
    1: "Macroeconomics",
    2: "Civil rights",
    3: "Health",
    4: "Agriculture",
    5: "Labor",
    6: "Education",
    7: "Environment",
    8: "Energy",
    9: "Immigration",
    10: "Transportation",
    12: "Law and crime",
    13: "Social welfare",
    14: "Housing",
    15: "Domestic commerce",
    16: "Defense",
    17: "Technology",
    18: "Foreign trade",
    19: "International affairs",
    20: "Government operations",
    21: "Public lands",
    23: "Culture",
}
WORDS = (
    "the government budget minister health care reform schools farmers trade tariffs energy prices oil "
    "immigration border police crime court housing rent defense army technology internet culture museum "
    "parliament vote bill committee tax workers union wages pension hospital climate emissions water roads "
    "railway airport banks inflation debt treaty embassy election campaign senator regional funding"
).split()


def tokenizer_for(vocab: int):
    """A byte-level BPE tokenizer trained here (no download) with a Llama-3 style chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, 40)) for _ in range(2000)]
    corpus += [f"Answer = [{c}] {n}" for c, n in CAP.items()] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|pad|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab, 4000), special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|pad|>"
    )
    fast.chat_template = (
        "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
        "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    return fast


def build_model(shape: str, tok, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=8192,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        attn_implementation="sdpa",
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # random weights of the real shapes, made directly on the device
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model, cfg


def dense_params(cfg) -> tuple[float, float]:
    """Parameters in the transformer blocks, and in the output layer."""
    d, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = d // cfg.num_attention_heads * cfg.num_key_value_heads
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f
    return per_layer * layers, d * cfg.vocab_size


def documents(n: int, doc_tokens: int, rng) -> list[str]:
    # about 1.3 words per token for this vocabulary; lengths vary +-50% like real documents
    return [" ".join(rng.choice(WORDS, max(3, int(doc_tokens * rng.uniform(0.5, 1.5) / 1.3)))) for _ in range(n)]


def peak_flops(device, override: float | None) -> tuple[float, str]:
    if override:
        return override * 1e12, "given"
    if device.type != "cuda":
        return float("nan"), "cpu"
    name = torch.cuda.get_device_name(device)
    for key, val in PEAK_BF16:
        if key in name:
            return val, name
    return float("nan"), name


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_model(shape: str, args, device, results: list) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    from fineclass.labels import LabelSpec
    from fineclass.methods.generative import GenerativeMethod, Plan
    from fineclass.prompts import default_template

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rng = np.random.default_rng(0)
    t0 = time.time()
    tok = tokenizer_for(SHAPES[shape]["vocab_size"])
    spec = LabelSpec(
        kind="single", classes=[str(c) for c in CAP], names={str(c): n for c, n in CAP.items()}, value_type="int"
    )
    plan = Plan(tok, spec, default_template(spec))
    method = GenerativeMethod()
    method.plan = plan
    model, cfg = build_model(shape, tok, device, dtype)
    blocks, out_layer = dense_params(cfg)
    layers, width = cfg.num_hidden_layers, cfg.hidden_size
    model = get_peft_model(
        model,
        LoraConfig(task_type=TaskType.CAUSAL_LM, r=64, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"),
    )
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"[{shape}] built in {time.time() - t0:.0f} s: {blocks / 1e9:.2f}B block parameters, LoRA r=64 "
        f"{lora / 1e6:.0f}M trainable; prompt head {len(plan.head_ids)} tokens, {len(CAP)} labels",
        flush=True,
    )
    peak, _ = peak_flops(device, args.peak_tflops)
    h = len(plan.head_ids)

    def attn_flops(ctx_tokens: float) -> float:
        return 4 * layers * width * ctx_tokens

    # ---------------------------------------------------------------- training (LoRA)
    docs = documents(args.batch * 64, args.doc_tokens, rng)
    enc = plan.encode(tok, docs, args.doc_tokens * 2)
    targets = torch.from_numpy(rng.integers(0, len(CAP), len(docs)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    steps, tokens, flops, t_train = 0, 0, 0.0, 0.0
    k = 0
    while True:
        idx = [(k * args.batch + i) % len(docs) for i in range(args.batch)]
        k += 1
        batch = method.collate(tok, [enc.ids[i] for i in idx], device)
        sync(device)
        t = time.perf_counter()
        loss = method.loss(model, batch, targets[idx].to(device), spec, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        dt = time.perf_counter() - t
        if k <= args.warmup:
            continue
        rest = sum(len(enc.ids[i]) - h for i in idx)
        answer = sum(len(plan.answer_ids(int(targets[i]))) + 1 for i in idx)
        n_tok = rest + answer + h
        ctx = h + rest / len(idx) + answer / len(idx)
        flops += 2 * blocks * n_tok * 2 + 2 * out_layer * answer * 2 + attn_flops(ctx) * (rest + answer) * 2
        tokens += n_tok
        steps += 1
        t_train += dt
        if t_train >= args.train_seconds or steps >= args.max_steps:
            break
    results.append(
        {
            "model": shape,
            "phase": "LoRA training",
            "batch": args.batch,
            "steps": steps,
            "tokens_per_s": tokens / t_train,
            "docs_per_s": steps * args.batch / t_train,
            "tflops": flops / t_train / 1e12,
            "mfu": flops / t_train / peak,
            "loss": loss.item(),
        }
    )
    print(f"[{shape}] training: {steps} steps, {tokens / t_train:,.0f} tokens/s", flush=True)
    del opt
    model = model.merge_and_unload().eval()  # deployment form for prediction (merge_for_inference)
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # ---------------------------------------------------------------- constrained scoring
    docs = documents(args.score_docs, args.doc_tokens, rng)
    enc = plan.encode(tok, docs, args.doc_tokens * 2)
    order = np.argsort([-len(x) for x in enc.ids])  # length-sorted batches, as infer.py does
    t_tree = len(plan.tree_tokens)
    sync(device)
    with torch.no_grad():
        method.probabilities(
            model, method.collate(tok, [enc.ids[i] for i in order[: args.score_batch]], device), spec
        )  # warm-up
        sync(device)
        t = time.perf_counter()
        tokens, flops = 0, 0.0
        for s in range(0, len(order), args.score_batch):
            idx = order[s : s + args.score_batch]
            probs = method.probabilities(model, method.collate(tok, [enc.ids[i] for i in idx], device), spec)
            rest = sum(len(enc.ids[i]) - h for i in idx)
            n_tok = rest + t_tree * len(idx) + h
            tokens += n_tok
            flops += (
                2 * blocks * n_tok
                + 2 * out_layer * len(plan.pred_nodes) * len(idx)
                + attn_flops(h + rest / len(idx) + t_tree) * (rest + t_tree * len(idx))
            )
        sync(device)
        dt = time.perf_counter() - t
    assert np.allclose(probs.sum(1), 1.0, atol=1e-3)
    results.append(
        {
            "model": shape,
            "phase": "constrained scoring",
            "batch": args.score_batch,
            "steps": len(order),
            "tokens_per_s": tokens / dt,
            "docs_per_s": len(order) / dt,
            "tflops": flops / dt / 1e12,
            "mfu": flops / dt / peak,
        }
    )
    print(f"[{shape}] scoring: {len(order) / dt:,.1f} documents/s", flush=True)

    # ---------------------------------------------------------------- one generate() per document (reference)
    from transformers import GenerationConfig

    n_new = max(len(t) for t in plan.cand_tokens[0]) + 1
    gcfg = GenerationConfig(
        max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=plan.pad_id, eos_token_id=plan.eos_ids
    )
    with torch.no_grad():
        model.generate(input_ids=torch.tensor([enc.ids[0]], device=device), generation_config=gcfg)
        sync(device)
        t = time.perf_counter()
        for i in range(args.generate_docs):
            model.generate(input_ids=torch.tensor([enc.ids[i]], device=device), generation_config=gcfg)
        sync(device)
        dt = time.perf_counter() - t
    results.append(
        {
            "model": shape,
            "phase": f"generate(), 1 doc/call, {n_new} new tokens",
            "batch": 1,
            "steps": args.generate_docs,
            "tokens_per_s": float("nan"),
            "docs_per_s": args.generate_docs / dt,
            "tflops": float("nan"),
            "mfu": float("nan"),
        }
    )
    print(f"[{shape}] generate: {args.generate_docs / dt:,.2f} documents/s", flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="1b,8b", help="comma-separated: 1b, 8b (tiny with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, a few steps, any device (CPU is fine)")
    ap.add_argument("--doc-tokens", type=int, default=64, help="typical document length in tokens")
    ap.add_argument("--batch", type=int, default=32, help="training batch (documents)")
    ap.add_argument("--score-batch", type=int, default=128, help="scoring batch (documents)")
    ap.add_argument("--score-docs", type=int, default=2048)
    ap.add_argument("--generate-docs", type=int, default=16)
    ap.add_argument("--train-seconds", type=float, default=30.0)
    ap.add_argument("--max-steps", type=int, default=10**9)
    ap.add_argument("--warmup", type=int, default=3, help="training steps not timed")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, if not known")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 LoRA weights: TF32 where autocast does not reach
    if args.smoke:
        args.models, args.batch, args.score_batch, args.score_docs = "tiny", 4, 8, 16
        args.generate_docs, args.train_seconds, args.max_steps, args.warmup, args.doc_tokens = 2, 5.0, 3, 1, 24
    elif device.type != "cuda":
        print("no CUDA GPU: run with --smoke to check the script on CPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    results: list = []
    t0 = time.time()
    for shape in [m.strip() for m in args.models.split(",") if m.strip()]:
        if shape not in SHAPES:
            print(f"unknown model shape {shape!r}; choose from {', '.join(SHAPES)}", file=sys.stderr)
            return 2
        try:
            run_model(shape, args, device, results)
        except Exception as e:  # report and go on with the next shape: one failure must not lose the others
            import traceback

            traceback.print_exc()
            results.append(
                {
                    "model": shape,
                    "phase": f"failed: {type(e).__name__}: {str(e)[:200]}",
                    "batch": 0,
                    "steps": 0,
                    "tokens_per_s": float("nan"),
                    "docs_per_s": float("nan"),
                    "tflops": float("nan"),
                    "mfu": float("nan"),
                }
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if args.json:  # after each shape, so a later failure or timeout keeps what was measured
            Path(args.json).write_text(
                json.dumps({"device": peak_flops(device, args.peak_tflops)[1], "results": results}, indent=2)
            )
    peak, name = peak_flops(device, args.peak_tflops)
    print(f"\ncommand: python {' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}")
    print(
        f"device: {name if device.type == 'cuda' else platform.processor() or 'cpu'}; dense bf16 peak "
        f"{peak / 1e12:.0f} TFLOP/s; torch {torch.__version__}; documents ~{args.doc_tokens} tokens; "
        f"total {time.time() - t0:.0f} s\n"
    )
    print("| model | phase | batch | documents/s | tokens/s | TFLOP/s | share of bf16 peak |")
    print("|---|---|---|---|---|---|---|")

    def fmt(v, spec):
        return "-" if (v is None or (isinstance(v, float) and math.isnan(v))) else format(v, spec)

    for r in results:
        print(
            f"| {r['model']} | {r['phase']} | {r['batch']} | {fmt(r['docs_per_s'], ',.1f')} | "
            f"{fmt(r['tokens_per_s'], ',.0f')} | {fmt(r['tflops'], '.1f')} | {fmt(r['mfu'], '.1%')} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
