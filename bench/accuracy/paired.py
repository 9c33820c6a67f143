"""Paired comparisons on the same 500 test reviews: fineclass's packaged methods against SetFit, the head and
TF-IDF, from the predictions that bench/accuracy/reviews.py keeps (``pred``, in test order).

    python bench/accuracy/paired.py bench/results/accuracy/reviews-*.json [--against setfit,head,tfidf]

For each training size and each pair, ``fineclass.paired_bootstrap`` gives the difference in accuracy (a - b)
with its 95% interval and bootstrap p-value (1,000 resamples, seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

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
                rows[(r["method"], r["n_train"])] = r
    if len(test_n) != 1:
        sys.exit(f"the files were scored on different test sets: test_n {sorted(test_n)}")
    _, test = load_reviews(test_n.pop(), [], 0)
    truth = test.select("id", "label")
    print(f"| training reviews | {args.method} | against | its accuracy | difference (95% interval) | p |")
    print("|---|---|---|---|---|---|")
    for n in sorted({n for _, n in rows}):
        a = rows.get((args.method, n))
        if a is None:
            continue
        pa = pl.DataFrame({"id": test["id"], "label": a["pred"]})
        for other in args.against.split(","):
            b = rows.get((other, n))
            if b is None:
                continue
            pb = pl.DataFrame({"id": test["id"], "label": b["pred"]})
            r = fineclass.paired_bootstrap(pa, pb, truth, metric="accuracy", seed=0).to_pylist()[0]
            print(
                f"| {n} | {a['accuracy'][0]:.3f} | {other} | {b['accuracy'][0]:.3f} | "
                f"{r['difference']:+.3f} [{r['lower']:+.3f}, {r['upper']:+.3f}] | {r['p_value']:.2f} |"
            )


if __name__ == "__main__":
    main()
