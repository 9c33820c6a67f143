"""Refit or not: the ensemble with and without its refit on every training document, scored on dev tweets.

Rule 15 of bench/PREREGISTRATION.md. For each seed, the ensemble (its defaults, ``epochs = 4``, a tenth held out,
as ``bench/learning_curve.py --dev`` trains it) is trained with ``extra["refit"] = True`` on the subset of the
flourishing train split that ``learning_curve --dev`` draws for that seed and size, and scored on the same 400
dev tweets (train split, never in a subset; the test split is not read). The same run's model without refit is
then scored too: the epoch loop's best description members, read back from its checkpoint, put in place of the
refitted ones. The codebook member, the weight and the decision rule are shared by both, so this is exactly the
model that a run without refit gives.

    python bench/refit_dev.py [--seeds 0,1,2] [--size 1200] [--epochs 4] [--validation 0.1] [--tag=-x]

Rule 16 runs it with ``--validation 0.2`` (a fifth held out) and compares the refit arm with rule 15's.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import fineclass
from fineclass.curve import HEADLINE, _subset, nested_subset, training_pool
from fineclass.data import labelled as labelled_set
from fineclass.tables import read_table
from fineclass.training import _load_trainable, load_checkpoint
from learning_curve import data_folder, flourishing_tables

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--validation", type=float, default=0.1, help="the share held out (rule 16 compares 0.2)")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument(
        "--codebook", action="store_true", help="also score the codebook method with and without the middle layer"
    )
    args = ap.parse_args()
    d = data_folder()
    warnings.simplefilter("ignore")
    train_split, labels, dev_ids = flourishing_tables(d, dev=True)  # learning_curve --dev's tables and draw
    table = read_table(train_split.select("id", "text"))
    long_labels = read_table(labels)
    codebook = fineclass.read_codebook(d / "codebook.csv")
    ds = labelled_set(table, text="text", label=("dimension", "level"), labels=long_labels)
    pool = training_pool(ds.ids, dev_ids)
    dev_docs = _subset(table, dev_ids)
    metric = HEADLINE[ds.spec.kind]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        ids = nested_subset(pool, seed, args.size)
        with tempfile.TemporaryDirectory() as ck:
            t0 = time.time()
            clf = fineclass.train(
                _subset(table, ids),
                model=args.model,
                method="ensemble",
                text="text",
                label=("dimension", "level"),
                labels=long_labels,
                id="id",
                codebook=codebook,
                spec=ds.spec,
                config={
                    "epochs": args.epochs,
                    "validation": args.validation,
                    "seed": seed,
                    "checkpoint_dir": ck,
                    "extra": {"refit": True},
                },
                progress=False,
            )
            seconds = time.time() - t0
            scores = {}
            for arm in ("refit", "no refit"):
                if arm == "no refit":
                    _, tensors = load_checkpoint(Path(ck), clf.manifest_["fingerprint"])
                    _load_trainable(clf.module_, tensors["best"])
                pred = clf.predict(dev_docs, text="text")
                ev = fineclass.evaluate(pred, long_labels, spec=ds.spec, ids=dev_ids, bootstrap=0)
                scores[arm] = {m: ev.get(m) for m in (metric, "presence_micro_f1")}
        m = clf.manifest_
        codebook_arms = {}
        if args.codebook:  # rule 17: the codebook method alone, on the same subset, with and without the middle layer
            for middle in (True, False):
                cb = fineclass.train(
                    _subset(table, ids), model=args.model, method="codebook", text="text",
                    label=("dimension", "level"), labels=long_labels, id="id", codebook=codebook, spec=ds.spec,
                    config={"seed": seed, "extra": {"middle_layer": middle}}, progress=False,
                )  # fmt: skip
                ev = fineclass.evaluate(
                    cb.predict(dev_docs, text="text"), long_labels, spec=ds.spec, ids=dev_ids, bootstrap=0
                )
                codebook_arms["middle" if middle else "last"] = {k: ev.get(k) for k in (metric, "presence_micro_f1")}
        row = {
            "seed": seed,
            "size": args.size,
            "validation": args.validation,
            "refit": scores["refit"],
            "no_refit": scores["no refit"],
            "gain": scores["refit"][metric] - scores["no refit"][metric],
            "best_epoch": m["best_epoch"],
            "description_weight": (m.get("closed_form") or {}).get("description_weight"),
            "rule": m["thresholds"],
            "refit_record": m["refit"],
            "codebook_middle_layer": (m.get("closed_form") or {}).get("codebook_middle_layer"),
            "codebook_method": codebook_arms or None,
            "seconds_train": round(seconds, 1),
        }
        rows.append(row)
        print(
            f"seed {seed}: {metric} refit {row['refit'][metric]:.4f}, without {row['no_refit'][metric]:.4f} "
            f"(gain {row['gain']:+.4f}); best epoch {row['best_epoch']}, {row['seconds_train']} s",
            flush=True,
        )
    mean = {arm: float(np.mean([r[arm][metric] for r in rows])) for arm in ("refit", "no_refit")}
    print(f"mean {metric}: refit {mean['refit']:.4f}, without {mean['no_refit']:.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"refit-dev-flourishing-ensemble{args.tag}.json"
    result = {
        "command": "python bench/refit_dev.py "
        + " ".join(f"--{k}={v}" for k, v in vars(args).items() if k != "out" and v != ""),
        "metric": metric,
        "runs": rows,
        "mean": mean,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
