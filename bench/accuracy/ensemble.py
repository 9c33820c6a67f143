"""Ensembles of the saved candidates' probabilities on the flourishing data (issue 19).

    python bench/accuracy/ensemble.py --members /tmp/codebook-lr-base.npz,/tmp/codebook-lr-maxsim.npz \
        [--finetuned /tmp/acc/desc-probs.npz] [--name ...]

Each member file holds out-of-fold probabilities on the 1,600 train tweets (``oof``) and test probabilities
(``test``), both (n, 46, 4), as codebook_lr.py writes them. The ensemble averages them. With --finetuned (the
description head's validation and test probabilities, finetune.py --save-probs), the thresholds are tuned on its
160 validation tweets (the frozen members' out-of-fold probabilities of those tweets), since the fine-tuned
encoder has seen the other 1,440.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import codebook_lr as K
import common as C


def validation_index(n: int, share: float = 0.1, seed: int = 0) -> np.ndarray:
    """finetune.py's validation tweets (the same seeded permutation)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: int(round(share * n))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", required=True)
    ap.add_argument("--finetuned", default=None)
    ap.add_argument("--finetuned-weight", type=float, default=1.0)
    ap.add_argument("--name", default="ensemble")
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy" / "flourishing-ensembles.json"))
    args = ap.parse_args()
    f = C.load_flourishing()
    files = args.members.split(",")
    oof = np.mean([np.load(p)["oof"] for p in files], 0)
    test = np.mean([np.load(p)["test"] for p in files], 0)
    y = f.y_train
    if args.finetuned:
        z = np.load(args.finetuned)
        val = validation_index(len(y))
        w = args.finetuned_weight
        k = len(files)
        oof = (k * oof[val] + w * z["val"]) / (k + w)
        test = (k * test + w * z["test"]) / (k + w)
        y = y[val]
        assert (z["y_val"] == y).all(), "the fine-tuned run's validation tweets differ"
    ids = f.test["id"].to_list()
    pres, lv = C.split_probs(oof)
    pres_t, lv_t = C.split_probs(test)
    rows = []
    th, val_j, alo = C.tune_thresholds(pres, lv, y, per_class=not args.finetuned)
    rows.append(
        {
            "candidate": f"{args.name} | thresholds" + (" per dimension" if not args.finetuned else " (one)"),
            "tuned_jaccard": round(val_j, 3),
            "members": files,
            "finetuned": args.finetuned,
            **C.score_dimlevel(C.to_long(ids, C.decode(pres_t, lv_t, th, alo), f.dims), f.test_labels, ids),
        }
    )
    g, val_g = K.tune_gamma(pres, lv, y)
    rows.append(
        {
            "candidate": f"{args.name} | expected-Jaccard sets",
            "tuned_jaccard": round(val_g, 3),
            "gamma": g,
            "members": files,
            "finetuned": args.finetuned,
            **C.score_dimlevel(C.to_long(ids, K.decode_expected_jaccard(pres_t, lv_t, g), f.dims), f.test_labels, ids),
        }
    )
    for r in rows:
        print(r, flush=True)
    out = Path(args.out)
    old = __import__("json").loads(out.read_text())["rows"] if out.exists() else []
    C.write_json(out, {"command": "python bench/accuracy/ensemble.py (see each row's members)", "rows": old + rows})


if __name__ == "__main__":
    main()
