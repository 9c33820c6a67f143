"""Paired comparisons on the same 500 test reviews: fineclass's packaged methods against SetFit, the head and
TF-IDF, from the predictions that bench/accuracy/reviews.py keeps (``pred``, in test order).

    python bench/accuracy/paired.py bench/results/accuracy/reviews-*.json [--against setfit,head,tfidf]

For each training size and each pair, ``fineclass.paired_bootstrap`` gives the difference in accuracy (a - b)
with its 95% interval and bootstrap p-value (1,000 resamples, seed 0). Files from runs with other ``--seed``s
(replications: another test sample and other training samples each) are paired within their seed, and each
comparison made in more than one replication gets a last line: the mean difference over the replications with
a 95% t interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reviews import load_reviews


def main() -> None:
    import fineclass

    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--method", default="fineclass-description")
    ap.add_argument("--against", default="setfit,head,tfidf")
    args = ap.parse_args()
    rows, test_n = {}, set()
    for f in args.files:
        d = json.loads(Path(f).read_text())
        test_n.add(d["test_n"])
        for r in d["rows"]:
            if "pred" in r:
                rows[(d.get("seed", 0), r["method"], r["n_train"])] = r
    if len(test_n) != 1:
        sys.exit(f"the files were scored on different test sets: test_n {sorted(test_n)}")
    test_n = test_n.pop()
    print(f"| training reviews | seed | {args.method} | against | its accuracy | difference (95% interval) | p |")
    print("|---|---|---|---|---|---|---|")
    seen: dict = {}
    for seed in sorted({s for s, _, _ in rows}):
        _, test = load_reviews(test_n, [], seed)
        truth = test.select("id", "label")
        for n in sorted({n for s, _, n in rows if s == seed}):
            a = rows.get((seed, args.method, n))
            if a is None:
                continue
            pa = pl.DataFrame({"id": test["id"], "label": a["pred"]})
            for other in args.against.split(","):
                b = rows.get((seed, other, n))
                if b is None:
                    continue
                pb = pl.DataFrame({"id": test["id"], "label": b["pred"]})
                r = fineclass.paired_bootstrap(pa, pb, truth, metric="accuracy", seed=0).to_pylist()[0]
                seen.setdefault((n, other), []).append((a["accuracy"][0], b["accuracy"][0], r["difference"]))
                print(
                    f"| {n} | {seed} | {a['accuracy'][0]:.3f} | {other} | {b['accuracy'][0]:.3f} | "
                    f"{r['difference']:+.3f} [{r['lower']:+.3f}, {r['upper']:+.3f}] | {r['p_value']:.2f} |"
                )
    for (n, other), got in seen.items():
        if len(got) < 2:
            continue
        a, b, diff = (np.array(x) for x in zip(*got))
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
        print(
            f"| {n} | mean of {len(diff)} | {a.mean():.3f} | {other} | {b.mean():.3f} | "
            f"{diff.mean():+.3f} [{diff.mean() - half:+.3f}, {diff.mean() + half:+.3f}] (t) | |"
        )


if __name__ == "__main__":
    main()
