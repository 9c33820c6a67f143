"""Learning curve on the flourishing train split: how Jaccard grows with the number of coded tweets.

Trains a method (the head by default; ``--method codebook``, ``description`` or ``ensemble`` read the coders'
codebook, codebook.csv, and keep their own defaults; the two trained by epochs take ``--epochs`` and a tenth of
each subset held out, as bench/flourishing.py trains them) on nested subsets of the 1,600 train tweets (sizes x
seeds), scores each run on the 400 test tweets with fineclass.evaluate, fits score = a - b * n^(-c), estimates the
labels needed for a target Jaccard, and writes the runs table, the summary and the plot.

    python bench/learning_curve.py [--sizes 100,200,400,800,1600] [--seeds 0,1,2] [--model minilm]
                                   [--epochs 4] [--target 0.45] [--out bench/results] [--method head]
                                   [--dev] [--tag=-x]

``--dev`` leaves the test split alone: it scores every run on 400 train-split tweets (seeded) that no subset
draws from, so that variants of a method can be compared before the test split is read (sizes up to 1,200).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import polars as pl

import fineclass

REPO = Path(__file__).resolve().parent.parent


def data_folder() -> Path:
    """The flourishing data folder: ``$FINECLASS_DATA``, else the shared data beside the checkout."""
    return Path(os.environ.get("FINECLASS_DATA", REPO.parent / "shared" / "data" / "flourishing"))


def flourishing_tables(d: Path, dev: bool) -> tuple[pl.DataFrame, pl.DataFrame, list]:
    """The coded tweets (id, text, split; sorted by id), their long codes, and the ids to score.

    With ``dev`` the test split is not read: only train-split tweets are kept, and 400 of them, drawn with a fixed
    seed, are the ones scored (no training subset draws from them).
    """
    tweets = pl.read_parquet(d / "tweets.parquet")
    split = pl.read_parquet(d / "labeled_ids.parquet")
    labels = pl.read_parquet(d / "labels.parquet").select("id", "dimension", "level")
    labelled = tweets.join(split, on="id").sort("id")
    test_ids = labelled.filter(pl.col("split") == "test")["id"].to_list()
    if dev:
        labelled = labelled.filter(pl.col("split") == "train")
        test_ids = labelled["id"].sample(400, seed=20261202, shuffle=True).to_list()
        labels = labels.filter(pl.col("id").is_in(labelled["id"].implode()))
    return labelled, labels, test_ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,200,400,800,1600")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--target", type=float, default=0.45)
    ap.add_argument("--method", default="head", help="head (the settings above) or a codebook method (its defaults)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--dev", action="store_true", help="score on 400 held-out train tweets, not the test split")
    ap.add_argument("--tag", default="", help="appended to the output files' names")
    args = ap.parse_args()
    d = data_folder()
    labelled, labels, test_ids = flourishing_tables(d, dev=args.dev)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    if args.method == "head":
        suffix = ""
        train_args = {
            "config": {
                "epochs": args.epochs,
                "max_length": args.max_length,
                "learning_rate": args.lr,
                "validation": 0.1,
                "early_stopping": 2,
            }
        }
    else:
        suffix = f"-{args.method}"
        codebook = fineclass.read_codebook(d / "codebook.csv")  # dimension, definition
        train_args = {"codebook": codebook}
        if args.method in ("description", "ensemble"):
            train_args["config"] = {"epochs": args.epochs, "validation": 0.1}
    suffix += ("-dev" if args.dev else "") + args.tag
    t0 = time.time()
    lc = fineclass.learning_curve(
        labelled.select("id", "text"),
        labels=labels,
        label=("dimension", "level"),
        test=test_ids,
        sizes=[int(s) for s in args.sizes.split(",")],
        seeds=[int(s) for s in args.seeds.split(",")],
        model=args.model,
        method=args.method,
        target=args.target,
        plot=out / f"learning-curve-flourishing{suffix}.png",
        **train_args,
    )
    seconds = round(time.time() - t0, 1)
    print(lc)
    print(f"total {seconds} s")
    fit = lc.fit
    result = {
        "command": "python bench/learning_curve.py "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
            for k, v in vars(args).items()
            if k != "out" and v not in (False, "")
        ),
        "method": args.method,
        "seconds": seconds,
        "metric": lc.metric,
        "runs": lc.table.to_pylist(),
        "summary": lc.summary().to_pylist(),
        "plot": lc.plot,
        "fit": None if fit is None else {"a": fit.a, "b": fit.b, "c": fit.c},
        "needed": None if lc.needed is None else lc.needed.to_pylist(),
    }
    path = out / f"learning-curve-flourishing{suffix}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
