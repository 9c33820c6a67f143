"""A multi-task MLP on the frozen codebook features (issue 19): one shared hidden layer for all 46 dimensions
(dimensions co-occur and share cues), a (absent, low, medium, high) softmax per dimension; seconds on a CPU.

    python bench/accuracy/mlp.py [--config base] [--hidden 512] [--epochs 300] [--seeds 0,1,2,3,4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import codebook_lr as K
import common as C


def fit_predict_mlp(
    x_tr: np.ndarray,
    y: np.ndarray,
    x_te: np.ndarray,
    hidden: int = 512,
    epochs: int = 300,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    dropout: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Full-batch AdamW on cross-entropy over the 4 values of every dimension -> (n_te, D, 4) probabilities."""
    torch.manual_seed(seed)
    d = y.shape[1]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.tensor((x_tr - mu) / sd, dtype=torch.float32)
    xe = torch.tensor((x_te - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y)
    net = torch.nn.Sequential(
        torch.nn.Dropout(0.1),
        torch.nn.Linear(x_tr.shape[1], hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, d * 4),
    )
    counts = np.stack([np.bincount(y[:, j], minlength=4) + 0.5 for j in range(d)])
    with torch.no_grad():  # start at the marginal shares of each dimension's values
        net[-1].bias.copy_(torch.tensor(np.log(counts / counts.sum(1, keepdims=True)).reshape(-1), dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        net.train()
        loss = F.cross_entropy(net(xt).view(-1, d, 4).reshape(-1, 4), yt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(xe).view(-1, d, 4), -1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="base")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--weight-decay", type=float, default=1e-2)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--save", default=None)
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy" / "flourishing-mlp.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    f = C.load_flourishing()
    D = len(f.dims)
    feat = K.frozen_features(f)
    x_tr, x_te = K.design(feat, "train", args.config, D), K.design(feat, "test", args.config, D)
    from sklearn.model_selection import KFold

    t = C.Timer()
    seeds = [int(s) for s in args.seeds.split(",")]
    kw = dict(hidden=args.hidden, epochs=args.epochs, dropout=args.dropout, weight_decay=args.weight_decay)
    p_oof = np.zeros((len(x_tr), D, 4))
    for tr, va in KFold(args.folds, shuffle=True, random_state=0).split(x_tr):
        p_oof[va] = np.mean([fit_predict_mlp(x_tr[tr], f.y_train[tr], x_tr[va], seed=s, **kw) for s in seeds], 0)
    t_fit = C.Timer()
    p_te = np.mean([fit_predict_mlp(x_tr, f.y_train, x_te, seed=s, **kw) for s in seeds], 0)
    fit_cost = t_fit.stop()
    if args.save:
        np.savez(args.save, oof=p_oof, test=p_te)
    name = (
        f"multi-task MLP on codebook features [{args.config}] (hidden {args.hidden}, {args.epochs} epochs, "
        f"{len(seeds)} seed(s))"
    )
    rows = K.score_both(name, p_oof, p_te, f, {"cost_with_folds": t.stop(), "final_fit_cost": fit_cost, **kw})
    out = Path(args.out)
    old = __import__("json").loads(out.read_text())["rows"] if out.exists() else []
    C.write_json(out, {"command": "python bench/accuracy/mlp.py (see each row)", "rows": old + rows})


if __name__ == "__main__":
    main()
