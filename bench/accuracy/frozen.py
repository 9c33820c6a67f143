"""Frozen-feature candidates on the flourishing data: per-dimension logistic regressions on TF-IDF, on frozen
MiniLM sentence embeddings, on the tweet-definition similarities, and stacked; thresholds tuned out of fold.

    python bench/accuracy/frozen.py [--folds 5] [--out bench/results/accuracy]

Each candidate yields (n, D, 4) probabilities P(absent, low, medium, high); presence thresholds (global, then
per dimension) are tuned on out-of-fold probabilities of the train split, so the test split is touched once.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C


def fit_predict_per_dim(x_tr, y_tr: np.ndarray, x_te, c: float = 1.0, balanced: bool = False) -> np.ndarray:
    """One 4-way logistic regression (absent/low/medium/high) per dimension -> (n_te, D, 4) probabilities.

    A dimension with a single value in training predicts it with probability 1."""
    from sklearn.linear_model import LogisticRegression

    n, d = x_te.shape[0], y_tr.shape[1]
    out = np.zeros((n, d, 4))
    for j in range(d):
        classes = np.unique(y_tr[:, j])
        if len(classes) < 2:
            out[:, j, classes[0]] = 1.0
            continue
        m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
        m.fit(x_tr, y_tr[:, j])
        out[:, j, m.classes_] = m.predict_proba(x_te)
    return out


def out_of_fold(x, y: np.ndarray, folds: int, seed: int = 0, **kw) -> np.ndarray:
    """Out-of-fold probabilities on the training documents (for threshold tuning)."""
    from sklearn.model_selection import KFold

    out = np.zeros((x.shape[0], y.shape[1], 4))
    for tr, va in KFold(folds, shuffle=True, random_state=seed).split(np.arange(x.shape[0])):
        out[va] = fit_predict_per_dim(x[tr], y[tr], x[va], **kw)
    return out


def evaluate_candidate(name: str, p_oof: np.ndarray, p_test: np.ndarray, f: C.Flourishing, per_class=True) -> dict:
    pres, lv = C.split_probs(p_oof)
    th, val, alo = C.tune_thresholds(pres, lv, f.y_train, per_class=per_class)
    pres_t, lv_t = C.split_probs(p_test)
    pred = C.decode(pres_t, lv_t, th, alo)
    ids = f.test["id"].to_list()
    row = {
        "candidate": name,
        "oof_jaccard": round(val, 3),
        "at_least_one": alo,
        "global_threshold": float(np.median(th)),
        **C.score_dimlevel(C.to_long(ids, pred, f.dims), f.test_labels, ids),
    }
    print(row, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch_threads()
    f = C.load_flourishing()
    timer = C.Timer()
    enc = C.Encoder(C.model_path("minilm"))
    tr_txt, te_txt = f.train["text"].to_list(), f.test["text"].to_list()
    e_tr, e_te = C.cached_embed(enc, tr_txt, args.max_length), C.cached_embed(enc, te_txt, args.max_length)
    e_def = C.cached_embed(enc, [f.definitions[d] for d in f.dims], args.max_length)
    e_name = C.cached_embed(enc, f.dims, args.max_length)
    embed_cost = timer.stop()
    print("embeddings", embed_cost, flush=True)

    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    t_tr, t_te = vec.fit_transform(tr_txt), vec.transform(te_txt)
    s_tr, s_te = e_tr @ np.r_[e_def, e_name].T, e_te @ np.r_[e_def, e_name].T  # cosine to definitions and names

    rows = []
    # zero-shot: presence = similarity to the definition, rescaled to [0, 1]; level = the dimension's usual level
    prior = np.stack(
        [np.bincount(f.y_train[:, j][f.y_train[:, j] > 0], minlength=4)[1:] + 1e-3 for j in range(len(f.dims))]
    )
    prior = prior / prior.sum(1, keepdims=True)

    def zero_shot(sim):
        pres = (sim[:, : len(f.dims)] + 1) / 2
        return np.concatenate([(1 - pres)[:, :, None], pres[:, :, None] * prior[None]], axis=2)

    rows.append(
        evaluate_candidate("zero-shot: cosine(tweet, definition), no training", zero_shot(s_tr), zero_shot(s_te), f)
    )
    for name, x_tr, x_te, kw in [
        ("TF-IDF + LR per dimension (C=4)", t_tr, t_te, {"c": 4.0}),
        ("frozen MiniLM embedding + LR per dimension (C=1)", e_tr, e_te, {"c": 1.0}),
        ("frozen MiniLM embedding + LR per dimension (C=4)", e_tr, e_te, {"c": 4.0}),
        ("frozen embedding + definition similarities + LR (C=1)", np.c_[e_tr, s_tr], np.c_[e_te, s_te], {"c": 1.0}),
        (
            "stack: TF-IDF + frozen embedding + similarities + LR (C=2)",
            sparse.hstack([t_tr, sparse.csr_matrix(np.c_[e_tr, s_tr])]).tocsr(),
            sparse.hstack([t_te, sparse.csr_matrix(np.c_[e_te, s_te])]).tocsr(),
            {"c": 2.0},
        ),
    ]:
        t = C.Timer()
        p_oof = out_of_fold(x_tr, f.y_train, args.folds, **kw)
        p_te = fit_predict_per_dim(x_tr, f.y_train, x_te, **kw)
        row = evaluate_candidate(name, p_oof, p_te, f)
        row["cost"] = t.stop()
        rows.append(row)
        # the same probabilities with one global threshold only, to show what per-class thresholds add
        rows.append(evaluate_candidate(name + ", one global threshold", p_oof, p_te, f, per_class=False))
    C.write_json(
        Path(args.out) / "flourishing-frozen.json",
        {
            "command": "python bench/accuracy/frozen.py " + " ".join(sys.argv[1:]),
            "embedding_cost": embed_cost,
            "rows": rows,
        },
    )


def torch_threads():
    import torch

    torch.set_num_threads(2)


if __name__ == "__main__":
    main()
