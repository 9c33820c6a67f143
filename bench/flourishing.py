"""Flourishing benchmark: fineclass's head method vs TF-IDF + logistic regression, beside the paper's anchors.

Train on the 1,600 train tweets, score the 400 test tweets of ../shared/data/flourishing with
fineclass.evaluate (per-tweet Jaccard of (dimension, level) pairs, presence micro-F1, accD; 95% bootstrap
intervals). The GPT-4 zero-shot and fine-tuned Llama-2-7B rows score the paper's own outputs.

    python bench/flourishing.py [--model minilm] [--epochs 8] [--max-length 64] [--out bench/results]

The generative method costs a CPU several seconds per tweet (46 dimensions x 4 levels are scored and trained
on); --train-n and --test-n take seeded samples of the splits so that it runs in minutes (every row is then
scored on the same sample, and --absent-blocks k trains on the present dimensions plus k absent ones per tweet):

    python bench/flourishing.py --model smollm2-135m --method generative --train-n 64 --test-n 64 \
        --epochs 1 --absent-blocks 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

import fineclass

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("FINECLASS_DATA", REPO.parent / "shared" / "data" / "flourishing"))


def load_split(d: Path):
    tweets = pl.read_parquet(d / "tweets.parquet")
    labels = pl.read_parquet(d / "labels.parquet")
    split = pl.read_parquet(d / "labeled_ids.parquet")
    train = tweets.join(split.filter(pl.col("split") == "train"), on="id").sort("id")
    test = tweets.join(split.filter(pl.col("split") == "test"), on="id").sort("id")
    return train, test, labels.filter(pl.col("split") == "train"), labels.filter(pl.col("split") == "test")


def tfidf_per_dimension(train, test, train_labels) -> pl.DataFrame:
    """TF-IDF + one logistic regression per dimension over (absent, low, medium, high): the anchor baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform(train["text"].to_list())
    x_test = vec.transform(test["text"].to_list())
    wide = train.select("id").join(train_labels.pivot(on="dimension", index="id", values="level"), on="id", how="left")
    rows = []
    for dim in sorted(train_labels["dimension"].unique().to_list()):
        y = wide[dim].fill_null("absent").to_numpy() if dim in wide.columns else np.full(train.height, "absent")
        if len(set(y)) < 2:
            continue
        pred = LogisticRegression(max_iter=1000, C=4.0).fit(x_train, y).predict(x_test)
        rows += [{"id": i, "dimension": dim, "level": p} for i, p in zip(test["id"].to_list(), pred) if p != "absent"]
    return pl.DataFrame(rows, schema={"id": pl.String, "dimension": pl.String, "level": pl.String})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--method", default="head")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--finetune", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-n", type=int, default=None, help="a seeded sample of this many train tweets")
    ap.add_argument("--test-n", type=int, default=None, help="a seeded sample of this many test tweets")
    ap.add_argument(
        "--absent-blocks",
        type=int,
        default=None,
        help="generative: absent dimensions trained on per tweet (default: all)",
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    d = data_dir()
    train, test, train_labels, test_labels = load_split(d)
    if args.train_n:
        train = train.sample(n=min(args.train_n, train.height), seed=0).sort("id")
        train_labels = train_labels.filter(pl.col("id").is_in(train["id"].implode()))
    if args.test_n:
        test = test.sample(n=min(args.test_n, test.height), seed=0).sort("id")
    test_ids = test["id"].to_list()
    results = {}

    def score(name, pred, seconds=None):
        ev = fineclass.evaluate(pred, test_labels, ids=test_ids, kind="dimlevel", seed=0)
        row = {"model": name}
        for m in ("jaccard", "presence_micro_f1", "accD"):
            r = [x for x in ev.metrics.to_pylist() if x["metric"] == m][0]
            row[m] = [round(r["estimate"], 3), round(r["lower"], 3), round(r["upper"], 3)]
        row["seconds"] = seconds
        results[name] = row
        print(json.dumps(row), flush=True)

    import warnings

    warnings.simplefilter("ignore")
    score("GPT-4 zero-shot (paper)", pl.read_parquet(d / "gpt4_zero_shot.parquet"))
    score("Llama-2-7B fine-tuned (paper)", pl.read_parquet(d / "llama2_7b_finetuned.parquet"))
    t = time.time()
    score(
        "TF-IDF + logistic regression per dimension",
        tfidf_per_dimension(train, test, train_labels),
        round(time.time() - t, 1),
    )
    t = time.time()
    all_dims = sorted(pl.read_parquet(d / "labels.parquet")["dimension"].unique().to_list())
    spec = fineclass.LabelSpec(kind="dimlevel", classes=all_dims, levels=["low", "medium", "high"])
    config = {
        "epochs": args.epochs,
        "max_length": args.max_length,
        "learning_rate": args.lr,
        "finetune": args.finetune,
        "validation": 0.1,
        "early_stopping": 3,
        "batch_size": args.batch_size,
    }
    if args.absent_blocks is not None:
        config["extra"] = {"absent_blocks": args.absent_blocks}
    clf = fineclass.train(
        train,
        labels=train_labels,
        label=("dimension", "level"),
        model=args.model,
        method=args.method,
        config=config,
        spec=spec,
    )
    pred = clf.predict(test)
    name = f"fineclass {args.method} ({args.model}, {clf.manifest_['finetune']}, {train.height} train tweets)"
    score(name, pred, round(time.time() - t, 1))
    results[name]["history"] = clf.history_
    results[name]["threshold"] = clf.thresholds_
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"flourishing-{args.method}-{args.model}".replace("/", "_")
    results["command"] = "python bench/flourishing.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None
    )
    (out / f"{tag}.json").write_text(json.dumps(results, indent=2))
    print(f"written to {out / (tag + '.json')}")


if __name__ == "__main__":
    main()
