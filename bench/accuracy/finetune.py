"""Fine-tuned codebook-aware candidates on the flourishing data (issue 19).

The "description head" ("codebook" method): a MiniLM sentence encoder, fine-tuned, whose presence scores are
scaled cosines between the tweet's embedding and one vector per dimension initialised from the embedding of
the dimension's codebook definition (a zero-shot start: before any step the model ranks dimensions by their
similarity to the definition), plus a per-dimension level head (low/medium/high given present).

    python bench/accuracy/finetune.py [--epochs 6] [--init definitions|random] [--max-length 0 (from data)]

Presence uses binary cross-entropy over all 46 dimensions (all dimensions of every tweet are seen, a CPU can
afford it because the tweet is encoded once); levels use cross-entropy on the present dimensions only.
Thresholds (global, then per dimension) are tuned on the 10% validation split; the test split is scored once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C


# ---------------------------------------------------------------------- model
class DescriptionHead(torch.nn.Module):
    """Encoder + one (trainable) vector per class, initialised from the class descriptions' embeddings.

    presence logit[d] = scale * cos(e(text), w_d) + bias_d; level logits[d] = V_d e(text) + c_d.
    """

    def __init__(
        self,
        encoder: C.Encoder,
        class_init: torch.Tensor,
        n_levels: int = 3,
        scale: float = 20.0,
        bias_init: torch.Tensor | None = None,
        level_prior: torch.Tensor | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        d, h = class_init.shape
        self.classes = torch.nn.Parameter(class_init.clone())
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)))
        self.bias = torch.nn.Parameter(bias_init.clone() if bias_init is not None else torch.zeros(d))
        self.level = torch.nn.Linear(h, d * n_levels)
        torch.nn.init.zeros_(self.level.weight)
        with torch.no_grad():  # level logits start at the log of each dimension's level shares
            self.level.bias.copy_(
                torch.log(level_prior).reshape(-1) if level_prior is not None else torch.zeros(d * n_levels)
            )
        self.n_levels = n_levels

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(batch)  # (n, h), unit norm
        w = F.normalize(self.classes, dim=-1)
        presence = self.log_scale.exp() * e @ w.T + self.bias  # (n, D)
        level = self.level(e).view(e.shape[0], -1, self.n_levels)  # (n, D, L)
        return presence, level


def loss_fn(
    presence: torch.Tensor, level: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None
) -> torch.Tensor:
    """BCE on presence (all dimensions) + CE on the level of the present dimensions."""
    present = (y > 0).float()
    l_p = F.binary_cross_entropy_with_logits(presence, present, pos_weight=pos_weight)
    mask = y > 0
    l_l = F.cross_entropy(level[mask], y[mask] - 1) if mask.any() else presence.sum() * 0
    return l_p + 0.1 * l_l


@torch.no_grad()
def probabilities(model: DescriptionHead, texts: list, max_length: int, batch_size: int = 64) -> np.ndarray:
    """(n, D, L+1) probabilities: P(absent), P(present) * P(level | present)."""
    model.eval()
    tok = model.encoder.tokenizer
    lens = C.token_lengths(tok, texts)
    order = np.argsort(-lens, kind="stable")
    out = None
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        pres, lev = model(model.encoder.tokens([texts[i] for i in idx], max_length))
        p = torch.sigmoid(pres).unsqueeze(-1)
        q = torch.softmax(lev, -1)
        block = torch.cat([1 - p, p * q], -1).numpy()
        if out is None:
            out = np.zeros((len(texts),) + block.shape[1:])
        out[idx] = block
    return out


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """Shuffled batches of similar length, in a shuffled order (as fineclass's loop does)."""
    order = rng.permutation(len(lengths))
    batches = []
    for s in range(0, len(order), batch_size * 50):
        g = order[s : s + batch_size * 50]
        g = g[np.argsort(-lengths[g], kind="stable")]
        batches += [g[i : i + batch_size] for i in range(0, len(g), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_loop(
    model,
    texts: list,
    y: np.ndarray,
    val_texts: list,
    y_val: np.ndarray,
    *,
    epochs: int,
    lr: float,
    head_lr: float,
    batch_size: int,
    max_length: int,
    seed: int = 0,
    patience: int = 2,
    time_budget: float = 1500.0,
    log=print,
) -> tuple[dict, list]:
    """AdamW with linear warm-up/decay; the encoder at ``lr``, the class vectors and heads at ``head_lr``;
    keeps the state with the best validation Jaccard (thresholds tuned on validation each epoch)."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc_params = list(model.encoder.parameters())
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": lr}, {"params": head_params, "lr": head_lr}], weight_decay=0.01
    )
    steps = math.ceil(len(texts) / batch_size) * epochs
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    present = (y > 0).mean(0)
    pos_weight = torch.tensor(np.clip(np.sqrt((1 - present) / np.maximum(present, 1e-3)), 1, 10), dtype=torch.float32)
    lengths = C.token_lengths(model.encoder.tokenizer, texts)
    yt = torch.from_numpy(y)
    best, history, t0 = {"jaccard": -1.0}, [], time.time()
    for epoch in range(epochs):
        model.train()
        te = time.time()
        total = 0.0
        for idx in length_batches(lengths, batch_size, rng):
            pres, lev = model(model.encoder.tokens([texts[i] for i in idx], max_length))
            loss = loss_fn(pres, lev, yt[idx], pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        train_s = time.time() - te
        p_val = probabilities(model, val_texts, max_length)
        with torch.no_grad():
            val_loss = float(loss_fn(*_logits_from_probs(p_val), torch.from_numpy(y_val), pos_weight))
        pres_v, lv_v = C.split_probs(p_val)
        th, jac, alo = C.tune_thresholds(pres_v, lv_v, y_val, per_class=False)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(total / len(texts), 4),
            "val_loss": round(val_loss, 4),
            "val_jaccard_global_threshold": round(jac, 4),
            "train_seconds": round(train_s, 1),
            "load": C.load_average(),
        }
        history.append(row)
        log(row)
        if jac > best["jaccard"]:
            best = {
                "jaccard": jac,
                "epoch": epoch + 1,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        elif epoch + 1 - best["epoch"] >= patience:
            break
        if time.time() - t0 > time_budget:
            log(f"time budget {time_budget} s reached")
            break
    model.load_state_dict(best["state"])
    return best, history


def _logits_from_probs(p: np.ndarray):
    """Presence logits and level log-probabilities back from (n, D, L+1) probabilities (for the val loss)."""
    p = torch.from_numpy(p).float().clamp(1e-7, 1 - 1e-7)
    pres = 1 - p[:, :, 0]
    return torch.log(pres) - torch.log1p(-pres), torch.log(p[:, :, 1:] / pres.unsqueeze(-1))


# ---------------------------------------------------------------------- run
def build(f: C.Flourishing, init: str, max_length: int) -> DescriptionHead:
    enc = C.Encoder(C.model_path("minilm"))
    d = len(f.dims)
    if init == "definitions":
        texts = [f"{x}: {f.definitions[x]}" for x in f.dims]
        w = torch.from_numpy(enc.embed(texts, 128))
    else:
        g = torch.Generator().manual_seed(0)
        w = F.normalize(torch.randn(d, enc.backbone.config.hidden_size, generator=g), dim=-1)
    # bias so that the initial presence rate matches the data's (a tweet has 3.7 of 46 dimensions)
    prior = np.clip((f.y_train > 0).mean(0), 1e-3, None)
    bias = torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32)
    if init == "definitions":
        e = torch.from_numpy(enc.embed(f.train["text"].to_list()[:256], max_length))
        bias = bias - 20.0 * (e @ w.T).mean(0)  # centre the cosines so that the prior holds on average
    counts = np.stack([np.bincount(f.y_train[:, j], minlength=4)[1:] + 0.5 for j in range(d)])
    level_prior = torch.tensor(counts / counts.sum(1, keepdims=True), dtype=torch.float32)
    return DescriptionHead(enc, w, scale=20.0, bias_init=bias, level_prior=level_prior)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--init", default="definitions", choices=["definitions", "random"])
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=0, help="0: the 95th percentile of the train tweets' lengths")
    ap.add_argument("--train-n", type=int, default=None)
    ap.add_argument("--time-budget", type=float, default=1500.0)
    ap.add_argument("--save-probs", default=None, help="write validation and test probabilities to this .npz")
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ.get("ACCURACY_THREADS", "2")))
    f = C.load_flourishing()
    texts, y = f.train["text"].to_list(), f.y_train
    if args.train_n:
        keep = np.sort(np.random.default_rng(0).permutation(len(texts))[: args.train_n])
        texts, y = [texts[i] for i in keep], y[keep]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(texts))
    n_val = int(round(0.1 * len(texts)))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    timer = C.Timer()
    model = build(f, args.init, 128)
    max_length, length_report = (
        (args.max_length, None)
        if args.max_length
        else C.data_max_length(model.encoder.tokenizer, [texts[i] for i in tr])
    )
    print("max_length", max_length, length_report, flush=True)
    test_texts = f.test["text"].to_list()
    ids = f.test["id"].to_list()
    # the zero-shot start, before any step (scored on the test split for the table; thresholds from validation)
    p0_val, p0_te = (
        probabilities(model, [texts[i] for i in val], max_length),
        probabilities(model, test_texts, max_length),
    )
    zs = _score(p0_val, y[val], p0_te, f, ids)
    print("zero-shot start", zs, flush=True)
    best, history = train_loop(
        model,
        [texts[i] for i in tr],
        y[tr],
        [texts[i] for i in val],
        y[val],
        epochs=args.epochs,
        lr=args.lr,
        head_lr=args.head_lr,
        batch_size=args.batch_size,
        max_length=max_length,
        time_budget=args.time_budget,
        log=lambda r: print(r, flush=True),
    )
    cost = timer.stop()
    tp = time.time()
    p_te = probabilities(model, test_texts, max_length)
    predict_s = time.time() - tp
    p_val = probabilities(model, [texts[i] for i in val], max_length)
    res = _score(p_val, y[val], p_te, f, ids)
    res_global = _score(p_val, y[val], p_te, f, ids, per_class=False)
    print("test", res, "global threshold", res_global, flush=True)
    if args.save_probs:
        np.savez(args.save_probs, val=p_val, y_val=y[val], test=p_te)
    # the fine-tuned encoder as a feature extractor: its embeddings and class similarities -> LR per dimension
    t_lr = C.Timer()
    lr_row = refit_lr(model, f, [texts[i] for i in tr], y[tr], [texts[i] for i in val], y[val], max_length)
    lr_row["cost"] = t_lr.stop()
    print("fine-tuned features + LR", lr_row, flush=True)
    name = f"description head ({args.init} init), fine-tuned MiniLM, {len(tr)} train + {len(val)} validation tweets"
    out = {
        "command": "python bench/accuracy/finetune.py " + " ".join(sys.argv[1:]),
        "candidate": name,
        "max_length": max_length,
        "length_report": length_report,
        "zero_shot_start": zs,
        "best_epoch": best["epoch"],
        "history": history,
        "train_cost": cost,
        "predict_seconds_400": round(predict_s, 1),
        "test": res,
        "test_global_threshold": res_global,
        "finetuned_features_lr": lr_row,
    }
    tag = f"flourishing-description-head-{args.init}" + (f"-{args.train_n}" if args.train_n else "")
    C.write_json(Path(args.out) / f"{tag}.json", out)


def refit_lr(
    model: DescriptionHead,
    f: C.Flourishing,
    texts_tr: list,
    y_tr: np.ndarray,
    texts_val: list,
    y_val: np.ndarray,
    max_length: int,
) -> dict:
    """Per-dimension logistic regressions on the fine-tuned encoder's embeddings and its class-vector
    similarities, fitted on the tweets the encoder trained on; thresholds tuned on the validation tweets
    (which the encoder never saw: out-of-fold scores on its own training tweets would be over-confident)."""
    import frozen

    model.eval()
    w = F.normalize(model.classes.detach(), dim=-1).numpy()
    feats = []
    for texts in (texts_tr, texts_val, f.test["text"].to_list()):
        e = model.encoder.embed(texts, max_length)
        feats.append(np.c_[e, e @ w.T])
    p = frozen.fit_predict_per_dim(feats[0], y_tr, np.r_[feats[1], feats[2]], c=1.0)
    p_val, p_te = p[: len(texts_val)], p[len(texts_val) :]
    return {
        "candidate": "fine-tuned description-head features + LR per dimension",
        **_score(p_val, y_val, p_te, f, f.test["id"].to_list()),
    }


def _score(p_val, y_val, p_te, f, ids, per_class=True) -> dict:
    pres, lv = C.split_probs(p_val)
    th, jac, alo = C.tune_thresholds(pres, lv, y_val, per_class=per_class)
    pres_t, lv_t = C.split_probs(p_te)
    pred = C.decode(pres_t, lv_t, th, alo)
    return {
        "val_jaccard": round(jac, 3),
        "at_least_one": alo,
        **C.score_dimlevel(C.to_long(ids, pred, f.dims), f.test_labels, ids),
    }


if __name__ == "__main__":
    main()
