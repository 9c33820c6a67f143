"""Choose the description method's few-label settings on validation reviews, never on the test reviews (issue 19).

    PYTHONPATH=python python bench/accuracy/reviews_validation.py [--sizes 64,256] [--seeds 0,1] [--val-n 500]

The test sample of bench/accuracy/reviews.py (its first --test-n reviews of one seeded order) is left out
entirely. From the rest, a validation sample of --val-n reviews is drawn with another seed, and for each training
seed a training sample of each size from what remains. Every candidate setting of the packaged ``description``
method is trained on the same samples and scored on the validation reviews; the script prints the mean accuracy
per setting and size over the seeds. The setting chosen here is the one reviews.py then runs on the test sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reviews import CODEBOOK, reviews_csv

CANDIDATES = {
    "packaged": {},
    # the default until 2026-12-01 (the rows named "packaged" in reviews-validation-description.json): the 10%
    # validation split chooses the epoch however few documents it holds
    "split-kept": {"extra": {"min_validation": 0}},
    "no-validation": {"validation": 0.0},
    "lr-5e-5": {"learning_rate": 5e-5},
    "steps-200": {"extra": {"min_steps": 200}},
    "head-lr-1e-4": {"extra": {"head_learning_rate": 1e-4}},
    "pair-1": {"extra": {"pair_weight": 1.0}},
    "pair-0.3": {"extra": {"pair_weight": 0.3}},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--test-n", type=int, default=500, help="the test sample of reviews.py, left out")
    ap.add_argument("--val-n", type=int, default=500)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--out", default="/tmp/reviews-validation.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ.get("ACCURACY_THREADS", "2")))
    import fineclass

    t = pl.read_csv(reviews_csv()).with_row_index("id").filter(pl.col("source") == "rotten_tomatoes")
    t = t.with_columns(pl.col("id").cast(pl.String)).select("id", "text", "label")
    perm = np.random.default_rng(0).permutation(t.height)
    rest = perm[args.test_n :]  # the test sample of reviews.py (seed 0) is never read
    rest = rest[np.random.default_rng(12345).permutation(len(rest))]
    val = t[rest[: args.val_n].tolist()]
    pool = rest[args.val_n :]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        order = pool[np.random.default_rng(100 + seed).permutation(len(pool))]
        for n in [int(s) for s in args.sizes.split(",")]:
            train = t[order[:n].tolist()]
            for name in args.candidates.split(","):
                t0 = time.time()
                clf = fineclass.train(
                    train, model="minilm", method="description", codebook=CODEBOOK, seed=0, progress=False,
                    **CANDIDATES[name],
                )  # fmt: skip
                pred = clf.predict(val).column("label").to_pylist()
                acc = float(np.mean(np.array(pred) == val["label"].to_numpy()))
                row = {
                    "candidate": name,
                    "n": n,
                    "seed": seed,
                    "accuracy": round(acc, 4),
                    "seconds": round(time.time() - t0, 1),
                    "epochs_run": clf.manifest_.get("epochs_run"),
                    "best_epoch": clf.manifest_.get("best_epoch"),
                }
                print(row, flush=True)
                rows.append(row)
                Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    summary = pl.DataFrame(rows).group_by("candidate", "n").agg(pl.col("accuracy").mean()).sort("n", "accuracy")
    print(summary)


if __name__ == "__main__":
    main()
