"""The "codebook features + logistic regression" candidates on the flourishing data (issue 19).

A frozen MiniLM reads each tweet once; its features are the sentence embedding (mean-pooled last layer, and
optionally the layer below), the cosines between it and each dimension's codebook definition and name, and
optionally, per dimension, the best cosine between a single token's state and the definition ("max-sim").
One logistic regression per dimension over (absent, low, medium, high). Options: a second stage that also reads
the first stage's out-of-fold probabilities of all 46 dimensions (dimensions co-occur), self-training on the
7,591 unlabelled tweets, and two decoders (presence thresholds per dimension, or the set that maximises the
expected Jaccard of each tweet). Everything tuned out of fold on the 1,600 train tweets; the test split is
scored once per candidate.

    python bench/accuracy/codebook_lr.py [--configs base,maxsim,...] [--out bench/results/accuracy]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C
import frozen


# ---------------------------------------------------------------------- features
def frozen_features(f: C.Flourishing, max_length: int = 128, unlabelled: int = 0) -> dict:
    """Per split: pooled layers, cosines to definitions and names, token max-sim to definitions (cached)."""
    enc = C.Encoder(C.model_path("minilm"))
    anchors = np.r_[C.cached_embed(enc, [f.definitions[d] for d in f.dims], 128), C.cached_embed(enc, f.dims, 128)]
    out = {"anchors": anchors}
    un = f.unlabelled.sample(n=min(unlabelled, f.unlabelled.height), seed=0).sort("id") if unlabelled else None
    splits = {"train": f.train, "test": f.test} | ({"unlabelled": un} if unlabelled else {})
    for name, df in splits.items():
        texts = df["text"].to_list()
        out[name] = C.cached(
            lambda texts=texts: C.layer_features(enc, texts, anchors, max_length),
            f"layer_features|{max_length}|" + "\x00".join(texts) + f"|{len(anchors)}",
        )
    return out


def design(feat: dict, split: str, config: str, n_dims: int) -> np.ndarray:
    """The feature matrix of one split for a configuration name (a '+'-joined list of parts)."""
    fs = feat[split]
    e = fs["pooled"][-1]
    parts = [e, e @ feat["anchors"].T]  # embedding, cosines to definitions and names
    if "maxsim" in config:
        parts.append(fs["maxsim"][:, :n_dims])
    if "layer2" in config:
        parts.append(fs["pooled"][-2])
    return np.concatenate(parts, 1).astype(np.float64)


# ---------------------------------------------------------------------- decoding by expected Jaccard
def decode_expected_jaccard(presence: np.ndarray, level_probs: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Per tweet, the top-k dimensions (by P(present) x P(best level)) for the k that maximises
    E|S and T| / E|S or T| ~ sum_S r / (k + gamma * sum_all p - sum_S r); at least one dimension."""
    r = presence * level_probs.max(2)
    order = np.argsort(-r, 1)
    cum = np.cumsum(np.take_along_axis(r, order, 1), 1)
    k = np.arange(1, r.shape[1] + 1)[None]
    ej = cum / (k + gamma * presence.sum(1, keepdims=True) - cum)
    best = ej.argmax(1) + 1
    on = np.zeros_like(presence, dtype=bool)
    for i, b in enumerate(best):
        on[i, order[i, :b]] = True
    return np.where(on, level_probs.argmax(2) + 1, 0)


def tune_gamma(presence, level_probs, truth) -> tuple[float, float]:
    grid = np.round(np.arange(0.3, 2.51, 0.1), 2)
    scores = [C.jaccard_rows(decode_expected_jaccard(presence, level_probs, g), truth).mean() for g in grid]
    k = int(np.argmax(scores))
    return float(grid[k]), float(scores[k])


# ---------------------------------------------------------------------- one candidate
def fit_candidate(x_tr, y, x_te, c: float, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities on train, test probabilities), both (n, D, 4)."""
    p_oof = frozen.out_of_fold(x_tr, y, folds, c=c)
    p_te = frozen.fit_predict_per_dim(x_tr, y, x_te, c=c)
    return p_oof, p_te


def score_both(name: str, p_oof, p_te, f: C.Flourishing, extra: dict) -> list:
    """Rows for the threshold decoder and the expected-Jaccard decoder."""
    ids = f.test["id"].to_list()
    pres, lv = C.split_probs(p_oof)
    pres_t, lv_t = C.split_probs(p_te)
    th, val, alo = C.tune_thresholds(pres, lv, f.y_train, per_class=True)
    pred = C.decode(pres_t, lv_t, th, alo)
    rows = [
        {
            "candidate": name + " | thresholds per dimension",
            "oof_jaccard": round(val, 3),
            **extra,
            **C.score_dimlevel(C.to_long(ids, pred, f.dims), f.test_labels, ids),
        }
    ]
    g, val_g = tune_gamma(pres, lv, f.y_train)
    pred = decode_expected_jaccard(pres_t, lv_t, g)
    rows.append(
        {
            "candidate": name + " | expected-Jaccard sets",
            "oof_jaccard": round(val_g, 3),
            "gamma": g,
            **extra,
            **C.score_dimlevel(C.to_long(ids, pred, f.dims), f.test_labels, ids),
        }
    )
    for r in rows:
        print(r, flush=True)
    return rows


def second_stage(x_tr, x_te, p_oof, p_te, y, c, folds):
    """Stacking: the first stage's presence probabilities of all dimensions join the features."""
    s_tr = np.c_[x_tr, 1 - p_oof[:, :, 0]]
    s_te = np.c_[x_te, 1 - p_te[:, :, 0]]
    return fit_candidate(s_tr, y, s_te, c, folds)


def knn_rates(
    e_ref: np.ndarray, y_ref: np.ndarray, e_q: np.ndarray, k: int = 20, exclude_self: bool = False
) -> np.ndarray:
    """Per query, the similarity-weighted share of its k nearest reference tweets that have each dimension."""
    sim = e_q @ e_ref.T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, 1)[:, :k]
    w = np.maximum(np.take_along_axis(sim, nn, 1), 0) + 1e-6
    present = (y_ref > 0).astype(np.float64)
    return np.einsum("qk,qkd->qd", w, present[nn]) / w.sum(1, keepdims=True)


def with_knn(x_tr, e_tr, y, x_te, e_te, c, folds, k: int = 20):
    """kNN presence rates as extra features: out of fold they come from the fold's training tweets only
    (leave-one-out inside it), for the test split from all train tweets."""
    from sklearn.model_selection import KFold

    out = np.zeros((len(x_tr), y.shape[1], 4))
    for tr, va in KFold(folds, shuffle=True, random_state=0).split(np.arange(len(x_tr))):
        a = np.c_[x_tr[tr], knn_rates(e_tr[tr], y[tr], e_tr[tr], k, exclude_self=True)]
        b = np.c_[x_tr[va], knn_rates(e_tr[tr], y[tr], e_tr[va], k)]
        out[va] = frozen.fit_predict_per_dim(a, y[tr], b, c=c)
    a = np.c_[x_tr, knn_rates(e_tr, y, e_tr, k, exclude_self=True)]
    p_te = frozen.fit_predict_per_dim(a, y, np.c_[x_te, knn_rates(e_tr, y, e_te, k)], c=c)
    return out, p_te


def self_train(x_tr, y, x_te, x_un, c, folds, min_presence: float = 0.5):
    """Pseudo-labels for the unlabelled tweets from the first stage (decoded with its thresholds; only tweets
    whose best dimension reaches ``min_presence``), added to every fold's training data."""
    p_un = frozen.fit_predict_per_dim(x_tr, y, x_un, c=c)
    p_oof = frozen.out_of_fold(x_tr, y, folds, c=c)
    pres, lv = C.split_probs(p_oof)
    th, _, alo = C.tune_thresholds(pres, lv, y, per_class=True)
    pres_u, lv_u = C.split_probs(p_un)
    keep = pres_u.max(1) >= min_presence
    y_un = C.decode(pres_u[keep], lv_u[keep], th, alo)
    x_aug = np.r_[x_tr, x_un[keep]]
    y_aug = np.r_[y, y_un]
    from sklearn.model_selection import KFold

    out = np.zeros((len(x_tr), y.shape[1], 4))
    for tr, va in KFold(folds, shuffle=True, random_state=0).split(np.arange(len(x_tr))):
        idx = np.r_[tr, np.arange(len(x_tr), len(x_aug))]
        out[va] = frozen.fit_predict_per_dim(x_aug[idx], y_aug[idx], x_tr[va], c=c)
    p_te = frozen.fit_predict_per_dim(x_aug, y_aug, x_te, c=c)
    return out, p_te, int(keep.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="base,maxsim,maxsim+layer2,maxsim+stack,maxsim+self")
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy"))
    ap.add_argument("--tag", default="")
    ap.add_argument(
        "--unlabelled-n", type=int, default=7591, help="self-training: a seeded sample of unlabelled tweets"
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(int(os.environ.get("ACCURACY_THREADS", "2")))
    f = C.load_flourishing()
    configs = args.configs.split(",")
    t = C.Timer()
    feat = frozen_features(f, args.max_length, unlabelled=args.unlabelled_n if any("self" in c for c in configs) else 0)
    feat_cost = t.stop()
    print("features", feat_cost, flush=True)
    D = len(f.dims)
    rows = []
    out_path = Path(args.out) / f"flourishing-codebook-lr{args.tag}.json"
    for cfg in configs:
        t = C.Timer()
        x_tr, x_te = design(feat, "train", cfg, D), design(feat, "test", cfg, D)
        extra = {}
        if "self" in cfg:
            x_un = design(feat, "unlabelled", cfg, D)
            p_oof, p_te, n_pseudo = self_train(x_tr, f.y_train, x_te, x_un, args.c, args.folds)
            extra["pseudo_labelled"] = n_pseudo
        else:
            if "knn" in cfg:
                p_oof, p_te = with_knn(
                    x_tr, feat["train"]["pooled"][-1], f.y_train, x_te, feat["test"]["pooled"][-1], args.c, args.folds
                )
            else:
                p_oof, p_te = fit_candidate(x_tr, f.y_train, x_te, args.c, args.folds)
            if "stack" in cfg:
                p_oof, p_te = second_stage(x_tr, x_te, p_oof, p_te, f.y_train, args.c, args.folds)
        extra["cost"] = t.stop()
        rows += score_both(f"codebook features [{cfg}] + LR per dimension", p_oof, p_te, f, extra)
        np.savez(Path("/tmp") / f"codebook-lr-{cfg}.npz", oof=p_oof, test=p_te)
        C.write_json(
            out_path,
            {
                "command": "python bench/accuracy/codebook_lr.py " + " ".join(sys.argv[1:]),
                "feature_cost": feat_cost,
                "rows": rows,
            },
        )


if __name__ == "__main__":
    main()
