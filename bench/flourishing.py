"""Flourishing benchmark: fineclass's methods vs TF-IDF + logistic regression, beside the paper's anchors.

Train on the 1,600 train tweets, score the 400 test tweets of ../shared/data/flourishing with
fineclass.evaluate (per-tweet Jaccard of (dimension, level) pairs, presence micro-F1, accD; 95% bootstrap
intervals). The GPT-4 zero-shot and fine-tuned Llama-2-7B rows score the paper's own outputs.

    python bench/flourishing.py [--model minilm] [--epochs 8] [--max-length 64] [--out bench/results]

--method takes a comma-separated list; the methods then run one after the other in one run, each scored on the
same test tweets beside TF-IDF (issue 19), each in a process of its own (its peak memory is its own). The
codebook-aware methods (``codebook``, ``description``, ``ensemble``) read the
dimensions' definitions from codebook.csv in the data folder; --epochs, --max-length, --lr and --batch-size
apply to the head and generative methods, the others keep their own defaults (``description`` and
``ensemble``: --description-epochs, --validation (unset: the method's share, a fifth for ``ensemble`` since rule 16
of PREREGISTRATION.md, a tenth otherwise), max_length "auto"):

    python bench/flourishing.py --method head,codebook --epochs 10 --max-length 64 --lr 2e-4

The generative method costs a CPU several seconds per tweet (46 dimensions x 4 levels are scored and trained
on); --train-n and --test-n take seeded samples of the splits so that it runs in minutes (every row is then
scored on the same sample, and --absent-blocks k trains on the present dimensions plus k absent ones per tweet):

    python bench/flourishing.py --model smollm2-135m --method generative --train-n 64 --test-n 64 \
        --epochs 1 --absent-blocks 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import polars as pl

import fineclass

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("FINECLASS_DATA", REPO.parent / "shared" / "data" / "flourishing"))


def load_split(d: Path):
    tweets = pl.read_parquet(d / "tweets.parquet")
    labels = pl.read_parquet(d / "labels.parquet")
    split = pl.read_parquet(d / "labeled_ids.parquet")
    train = tweets.join(split.filter(pl.col("split") == "train"), on="id").sort("id")
    test = tweets.join(split.filter(pl.col("split") == "test"), on="id").sort("id")
    return train, test, labels.filter(pl.col("split") == "train"), labels.filter(pl.col("split") == "test")


def tfidf_per_dimension(train, test, train_labels) -> pl.DataFrame:
    """TF-IDF + one logistic regression per dimension over (absent, low, medium, high): the anchor baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform(train["text"].to_list())
    x_test = vec.transform(test["text"].to_list())
    wide = train.select("id").join(train_labels.pivot(on="dimension", index="id", values="level"), on="id", how="left")
    rows = []
    for dim in sorted(train_labels["dimension"].unique().to_list()):
        y = wide[dim].fill_null("absent").to_numpy() if dim in wide.columns else np.full(train.height, "absent")
        if len(set(y)) < 2:
            continue
        pred = LogisticRegression(max_iter=1000, C=4.0).fit(x_train, y).predict(x_test)
        rows += [{"id": i, "dimension": dim, "level": p} for i, p in zip(test["id"].to_list(), pred) if p != "absent"]
    return pl.DataFrame(rows, schema={"id": pl.String, "dimension": pl.String, "level": pl.String})


def definitions(d: Path) -> dict:
    """The coders' definition of each dimension (codebook.csv: dimension, definition); {} when absent."""
    path = d / "codebook.csv"
    if not path.exists():
        return {}
    book = pl.read_csv(path)
    return dict(zip(book["dimension"].to_list(), book["definition"].to_list()))


def method_config(method: str, args) -> dict:
    """The training settings of one method: the command line's for head and generative, their own defaults else."""
    if method == "codebook":  # no epochs: one encoder pass, logistic regressions, out-of-fold thresholds
        return {"seed": 0}
    if method in ("description", "ensemble"):  # ensemble: the description member's epochs, then the codebook's fit
        config = {"epochs": args.description_epochs, "batch_size": args.batch_size, "seed": 0}
        if args.validation is not None:  # else the method's share: a tenth, a fifth for the ensemble (rule 16)
            config["validation"] = args.validation
        if args.extra:
            config["extra"] = dict(args.extra)
        return config
    config = {
        "epochs": args.epochs,
        "max_length": args.max_length,
        "learning_rate": args.lr,
        "finetune": args.finetune,
        "validation": 0.1,
        "early_stopping": 3,
        "batch_size": args.batch_size,
    }
    if args.absent_blocks is not None:
        config["extra"] = {"absent_blocks": args.absent_blocks}
    return config


def setting(text: str) -> tuple:
    """``name=value`` from the command line, the value read as JSON when it can be (``2``, ``0.5``, ``true``)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def train_and_predict(method: str, args, train, train_labels, test, spec: dict) -> dict:
    """One method's row, run in a process of its own so that its peak memory is its own.

    Returns the test predictions, the seconds of training and predicting, and what the row records.
    """
    import resource

    t = time.time()
    clf = fineclass.train(
        train,
        labels=train_labels,
        label=("dimension", "level"),
        model=args.model,
        method=method,
        config=method_config(method, args),
        spec=fineclass.LabelSpec.from_dict(spec),
    )
    seconds_train = round(time.time() - t, 1)
    t_pred = time.time()
    pred = pl.from_arrow(clf.predict(test))
    seconds_predict = round(time.time() - t_pred, 1)
    m = clf.manifest_
    return {
        "pred": pred,
        "finetune": m["finetune"],
        "seconds_train": seconds_train,
        "seconds_predict": seconds_predict,
        "max_length": m["config"]["max_length"],
        "validation": m["config"]["validation"],
        "n_validation": m["n_validation"],
        "history": clf.history_,
        "closed_form": m.get("closed_form"),
        "refit": m.get("refit"),
        "threshold": clf.thresholds_,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": os.getloadavg(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--method", default="head", help="one method, or several separated by commas")
    ap.add_argument("--description-epochs", type=int, default=2, help="epochs of the description method")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--finetune", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--validation",
        type=float,
        default=None,
        help="the share held out by description and ensemble (default: the method's, a tenth; a fifth for ensemble)",
    )
    ap.add_argument("--train-n", type=int, default=None, help="a seeded sample of this many train tweets")
    ap.add_argument("--test-n", type=int, default=None, help="a seeded sample of this many test tweets")
    ap.add_argument(
        "--absent-blocks",
        type=int,
        default=None,
        help="generative: absent dimensions trained on per tweet (default: all)",
    )
    ap.add_argument(
        "--extra",
        action="append",
        type=setting,
        default=[],
        help="description and ensemble: a setting of config['extra'] as name=value (JSON value), repeatable",
    )
    ap.add_argument("--tag", default="", help="appended to the results file's name")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    d = data_dir()
    train, test, train_labels, test_labels = load_split(d)
    if args.train_n:
        train = train.sample(n=min(args.train_n, train.height), seed=0).sort("id")
        train_labels = train_labels.filter(pl.col("id").is_in(train["id"].implode()))
    if args.test_n:
        test = test.sample(n=min(args.test_n, test.height), seed=0).sort("id")
    test_ids = test["id"].to_list()
    results = {}
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"flourishing-{'+'.join(methods)}-{args.model}{args.tag}".replace("/", "_")
    options = []  # the command as it can be typed again: --extra once per setting, a value with a leading dash after =
    for k, v in vars(args).items():
        if k == "out" or v is None or v == "" or v == []:
            continue
        flag = f"--{k.replace('_', '-')}"
        if k == "extra":
            options += [f"{flag} {name}={json.dumps(value)}" for name, value in v]
        else:
            options.append(f"{flag}={v}" if str(v).startswith("-") else f"{flag} {v}")
    results["command"] = "python bench/flourishing.py " + " ".join(options)

    def write():  # after every row, so that a run stopped half-way keeps what it measured
        (out / f"{tag}.json").write_text(json.dumps(results, indent=2))

    def score(name, pred, seconds=None):
        ev = fineclass.evaluate(pred, test_labels, ids=test_ids, kind="dimlevel", seed=0)
        row = {"model": name}
        for m in ("jaccard", "presence_micro_f1", "accD"):
            r = [x for x in ev.metrics.to_pylist() if x["metric"] == m][0]
            row[m] = [round(r["estimate"], 3), round(r["lower"], 3), round(r["upper"], 3)]
        row["seconds"] = seconds
        results[name] = row
        write()
        print(json.dumps(row), flush=True)

    import warnings

    warnings.simplefilter("ignore")
    score("GPT-4 zero-shot (paper)", pl.read_parquet(d / "gpt4_zero_shot.parquet"))
    score("Llama-2-7B fine-tuned (paper)", pl.read_parquet(d / "llama2_7b_finetuned.parquet"))
    t = time.time()
    score(
        "TF-IDF + logistic regression per dimension",
        tfidf_per_dimension(train, test, train_labels),
        round(time.time() - t, 1),
    )
    all_dims = sorted(pl.read_parquet(d / "labels.parquet")["dimension"].unique().to_list())
    spec = fineclass.LabelSpec(
        kind="dimlevel", classes=all_dims, levels=["low", "medium", "high"], descriptions=definitions(d)
    )
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    for method in methods:
        t = time.time()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            got = pool.submit(train_and_predict, method, args, train, train_labels, test, spec.to_dict()).result()
        pred = got.pop("pred")
        name = f"fineclass {method} ({args.model}, {got.pop('finetune')}, {train.height} train tweets)"
        score(name, pred, round(time.time() - t, 1))
        results[name].update(got)  # peak_rss_mb: this method's own process (spawned), libraries included
        write()
    print(f"written to {out / (tag + '.json')}")


if __name__ == "__main__":
    main()
