"""Shared pieces of the accuracy prototypes (issue 19): data, encoders, decoding, thresholds, scoring, timing.

Everything here is self-contained (transformers, torch, sklearn, polars) and uses only fineclass's public API
(`fineclass.evaluate`, `fineclass.models.resolve`), so the prototypes keep working while the package is
restructured. Targets for the flourishing data are an (n, D) integer matrix: 0 = absent, 1..L = level index.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

REPO = Path(__file__).resolve().parents[2]
LEVELS = ["low", "medium", "high"]


# ---------------------------------------------------------------------- data
def data_dir() -> Path:
    return Path(os.environ.get("FINECLASS_DATA", REPO.parent / "shared" / "data" / "flourishing"))


@dataclass
class Flourishing:
    train: pl.DataFrame  # id, text (1,600 tweets, sorted by id)
    test: pl.DataFrame  # id, text (400)
    unlabelled: pl.DataFrame  # id, text (7,591)
    train_labels: pl.DataFrame  # id, dimension, level (long)
    test_labels: pl.DataFrame
    dims: list  # the 46 dimensions, sorted
    definitions: dict  # dimension -> the coders' one-line definition
    y_train: np.ndarray = field(default=None)  # (n_train, D) 0 = absent, 1..3 = low/medium/high
    y_test: np.ndarray = field(default=None)


def load_flourishing() -> Flourishing:
    d = data_dir()
    tweets = pl.read_parquet(d / "tweets.parquet").select("id", "text")
    labels = pl.read_parquet(d / "labels.parquet")
    split = pl.read_parquet(d / "labeled_ids.parquet")
    train = tweets.join(split.filter(pl.col("split") == "train"), on="id").select("id", "text").sort("id")
    test = tweets.join(split.filter(pl.col("split") == "test"), on="id").select("id", "text").sort("id")
    unlabelled = tweets.join(split, on="id", how="anti").sort("id")
    dims = sorted(labels["dimension"].unique().to_list())
    cb = pl.read_csv(d / "codebook.csv")
    definitions = dict(zip(cb["dimension"].to_list(), cb["definition"].to_list()))
    missing = [x for x in dims if x not in definitions]
    assert not missing, f"codebook lacks {missing}"
    f = Flourishing(
        train,
        test,
        unlabelled,
        labels.filter(pl.col("split") == "train").select("id", "dimension", "level"),
        labels.filter(pl.col("split") == "test").select("id", "dimension", "level"),
        dims,
        definitions,
    )
    f.y_train = target_matrix(train["id"].to_list(), f.train_labels, dims)
    f.y_test = target_matrix(test["id"].to_list(), f.test_labels, dims)
    return f


def target_matrix(ids: list, long: pl.DataFrame, dims: list) -> np.ndarray:
    row = {i: k for k, i in enumerate(ids)}
    col = {x: k for k, x in enumerate(dims)}
    y = np.zeros((len(ids), len(dims)), dtype=np.int64)
    for i, dim, lev in long.select("id", "dimension", "level").iter_rows():
        if i in row:
            y[row[i], col[dim]] = LEVELS.index(lev) + 1
    return y


def to_long(ids: list, pred: np.ndarray, dims: list) -> pl.DataFrame:
    """(n, D) level indices -> the long (id, dimension, level) table fineclass.evaluate reads."""
    r, c = np.nonzero(pred)
    return pl.DataFrame(
        {
            "id": [ids[i] for i in r],
            "dimension": [dims[j] for j in c],
            "level": [LEVELS[pred[i, j] - 1] for i, j in zip(r, c)],
        },
        schema={"id": pl.String, "dimension": pl.String, "level": pl.String},
    )


def score_dimlevel(pred_long: pl.DataFrame, truth_long: pl.DataFrame, ids: list) -> dict:
    """Jaccard, presence micro-F1, accD (and pair micro-F1) with 95% bootstrap intervals (1,000 resamples, seed 0)."""
    import fineclass

    ev = fineclass.evaluate(pred_long, truth_long, ids=ids, kind="dimlevel", seed=0)
    out = {}
    for r in ev.metrics.to_pylist():
        if r["metric"] in ("jaccard", "presence_micro_f1", "accD", "pair_micro_f1", "presence_macro_f1"):
            out[r["metric"]] = [round(r["estimate"], 3), round(r["lower"], 3), round(r["upper"], 3)]
    return out


# ---------------------------------------------------------------------- decoding and thresholds
def jaccard_rows(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-document Jaccard of (dimension, level) pairs, both (n, D) level matrices."""
    inter = ((pred == truth) & (truth > 0)).sum(1)
    union = (pred > 0).sum(1) + (truth > 0).sum(1) - inter
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def decode(presence: np.ndarray, level_probs: np.ndarray, thresholds, at_least_one: bool = True) -> np.ndarray:
    """presence (n, D) P(dimension present); level_probs (n, D, L) P(level | present) -> (n, D) level indices.

    A dimension is coded when its presence probability reaches its threshold (a scalar or one per dimension);
    with ``at_least_one`` a document with nothing above threshold gets its most probable dimension (every
    coded tweet of the flourishing data has at least one).
    """
    t = np.broadcast_to(np.asarray(thresholds, dtype=float), presence.shape[1:])
    on = presence >= t
    if at_least_one:
        empty = ~on.any(1)
        on[np.flatnonzero(empty), presence[empty].argmax(1)] = True
    return np.where(on, level_probs.argmax(2) + 1, 0)


GRID = np.round(np.arange(0.02, 0.96, 0.02), 3)


def tune_thresholds(
    presence: np.ndarray,
    level_probs: np.ndarray,
    truth: np.ndarray,
    per_class: bool = True,
    shrink: int = 5,
    at_least_one: bool = True,
) -> tuple[np.ndarray, float, bool]:
    """Thresholds that maximise mean per-document Jaccard on held-out documents.

    First one global threshold (grid search); then, if ``per_class``, coordinate ascent over dimensions, one
    pass, each dimension's threshold moved only where the dimension occurs at least ``shrink`` times in the
    held-out truth (rare dimensions keep the global one: their per-class optimum is noise). Also decides
    whether the at-least-one rule helps. Returns (thresholds (D,), held-out Jaccard, at_least_one).
    """
    best = (-1.0, 0.5, True)
    for alo in (True, False) if at_least_one else (False,):
        for t in GRID:
            s = jaccard_rows(decode(presence, level_probs, t, alo), truth).mean()
            if s > best[0]:
                best = (s, float(t), alo)
    score, t0, alo = best
    th = np.full(presence.shape[1], t0)
    if per_class:
        support = (truth > 0).sum(0)
        for j in np.argsort(-support):
            if support[j] < shrink:
                continue
            cands = []
            for t in GRID:
                th2 = th.copy()
                th2[j] = t
                cands.append(jaccard_rows(decode(presence, level_probs, th2, alo), truth).mean())
            k = int(np.argmax(cands))
            if cands[k] > score + 1e-9:
                score, th[j] = cands[k], GRID[k]
    return th, float(score), alo


def split_probs(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, D, L+1) P(absent, level 1..L) -> presence (n, D) and P(level | present) (n, D, L)."""
    presence = 1.0 - p[:, :, 0]
    lv = p[:, :, 1:]
    return presence, lv / np.maximum(lv.sum(2, keepdims=True), 1e-12)


# ---------------------------------------------------------------------- encoders
def model_path(name: str = "minilm") -> str:
    from fineclass.models import resolve

    return resolve(name)


def token_lengths(tokenizer, texts: list) -> np.ndarray:
    return np.array([len(x) for x in tokenizer(list(texts), add_special_tokens=True)["input_ids"]])


def data_max_length(tokenizer, texts: list, q: float = 95, cap: int = 256, floor: int = 16) -> tuple[int, dict]:
    """The default max_length that follows the data: the q-th percentile of token lengths, rounded up to a
    multiple of 8, between ``floor`` and ``cap`` (and the model's own limit). Returns it and a report."""
    lens = token_lengths(tokenizer, texts)
    limit = min(cap, getattr(tokenizer, "model_max_length", cap) or cap)
    m = int(min(limit, max(floor, int(np.ceil(np.percentile(lens, q) / 8) * 8))))
    rep = {
        "max_length": m,
        "percentile": q,
        "cap": cap,
        "p50": int(np.median(lens)),
        "p95": int(np.percentile(lens, 95)),
        "max": int(lens.max()),
        "truncated": int((lens > m).sum()),
        "n": len(lens),
    }
    return m, rep


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class Encoder(torch.nn.Module):
    """A sentence encoder: a transformers backbone, mean pooling, L2 normalisation (MiniLM's own recipe)."""

    def __init__(self, path: str):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.backbone = AutoModel.from_pretrained(path)

    def tokens(self, texts: list, max_length: int) -> dict:
        return self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")

    def forward(self, batch: dict, normalize: bool = True) -> torch.Tensor:
        out = self.backbone(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
        )
        e = mean_pool(out.last_hidden_state, batch["attention_mask"])
        return torch.nn.functional.normalize(e, dim=-1) if normalize else e

    @torch.no_grad()
    def embed(self, texts: list, max_length: int = 128, batch_size: int = 64) -> np.ndarray:
        """Embeddings of many texts, in length-sorted batches (little padding), returned in input order."""
        was = self.training
        self.eval()
        lens = token_lengths(self.tokenizer, texts)
        order = np.argsort(-lens, kind="stable")
        out = np.zeros((len(texts), self.backbone.config.hidden_size), dtype=np.float32)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = self(self.tokens([texts[i] for i in idx], max_length)).numpy()
        self.train(was)
        return out


@torch.no_grad()
def layer_features(
    encoder: Encoder, texts: list, anchors: np.ndarray, max_length: int = 128, layers=(-1, -2), batch_size: int = 64
) -> dict:
    """Frozen features in one pass: the normalised mean-pooled states of ``layers`` and, for each anchor
    (e.g. a definition's embedding), the largest cosine between it and any single token's last-layer state
    (a phrase that matches a definition counts even in a long tweet). Returned in input order."""
    encoder.eval()
    lens = token_lengths(encoder.tokenizer, texts)
    order = np.argsort(-lens, kind="stable")
    a = torch.nn.functional.normalize(torch.from_numpy(anchors).float(), dim=-1)
    pooled = {k: np.zeros((len(texts), encoder.backbone.config.hidden_size), dtype=np.float32) for k in layers}
    maxsim = np.zeros((len(texts), len(anchors)), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        b = encoder.tokens([texts[i] for i in idx], max_length)
        out = encoder.backbone(**b, output_hidden_states=True)
        mask = b["attention_mask"]
        for k in layers:
            pooled[k][idx] = torch.nn.functional.normalize(mean_pool(out.hidden_states[k], mask), dim=-1).numpy()
        tok = torch.nn.functional.normalize(out.hidden_states[-1], dim=-1) @ a.T  # (n, t, A)
        tok = tok.masked_fill(mask.unsqueeze(-1) == 0, -1.0)
        maxsim[idx] = tok.max(1).values.numpy()
    return {"pooled": pooled, "maxsim": maxsim}


def cached(fn, key: str):
    """fn() cached on disk under a hash of ``key`` (for frozen features of the untrained packaged encoder)."""
    import hashlib
    import pickle

    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(os.environ.get("ACCURACY_CACHE", "/tmp/accuracy-cache")) / f"{h}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    v = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(v))
    return v


def cached_embed(encoder: Encoder, texts: list, max_length: int = 128, tag: str = "minilm") -> np.ndarray:
    """Frozen embeddings, cached on disk by a hash of the texts (only for the untrained packaged encoder)."""
    import hashlib

    h = hashlib.sha256(("\x00".join(texts) + f"|{max_length}|{tag}").encode()).hexdigest()[:16]
    path = Path(os.environ.get("ACCURACY_CACHE", "/tmp/accuracy-cache")) / f"{h}.npy"
    if path.exists():
        return np.load(path)
    e = encoder.embed(texts, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, e)
    return e


# ---------------------------------------------------------------------- cost
def load_average() -> str:
    try:
        return (
            subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[1].strip()
        )
    except Exception:
        return "?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    def __init__(self):
        self.t = time.time()
        self.load_start = load_average()

    def stop(self) -> dict:
        return {
            "seconds": round(time.time() - self.t, 1),
            "load_start": self.load_start,
            "load_end": load_average(),
            "peak_rss_mb": round(peak_rss_mb(), 0),
        }


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
