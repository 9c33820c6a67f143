"""The Ray engine on a real local Ray instance with two CPU workers: same output as the local engine, a killed
worker retried with each id written exactly once, resume across engines, and Ray kept optional."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fineclass.errors import FineclassError

SHARD_ROWS = 50  # 240 rows: shards of 50, 50, 50, 50, 40 that straddle files and row groups


def _ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


needs_ray = pytest.mark.skipif(not _ray_available(), reason="Ray is not installed (pip install fineclass[ray])")


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ray-faults")


@pytest.fixture(scope="module")
def ray_local(fault_dir):
    ray = pytest.importorskip("ray")
    # the actors' processes inherit this: a crash-<shard>-<when> file in the folder kills the actor on that shard
    old = os.environ.get("FINECLASS_RAY_FAULT_DIR")
    os.environ["FINECLASS_RAY_FAULT_DIR"] = str(fault_dir)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=96 * 1024**2,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("FINECLASS_RAY_FAULT_DIR", None)
    else:
        os.environ["FINECLASS_RAY_FAULT_DIR"] = old


@pytest.fixture(scope="module")
def saved_model(tiny_classifier, tmp_path_factory) -> str:
    return tiny_classifier.save(tmp_path_factory.mktemp("ray-model") / "clf")


@pytest.fixture(scope="module")
def corpus(reviews_small, tmp_path_factory) -> Path:
    """The 240 reviews without an id column (ids are row numbers), two texts blanked, in three Parquet files
    of 80 rows with row groups of 37 rows."""
    t = reviews_small.drop("id").to_arrow()
    texts = t.column("text").to_pylist()
    texts[7], texts[130] = "", None
    t = t.set_column(t.column_names.index("text"), "text", pa.array(texts, pa.string()))
    folder = tmp_path_factory.mktemp("ray-corpus")
    for j in range(3):
        pq.write_table(t.slice(j * 80, 80), folder / f"reviews-{j}.parquet", row_group_size=37)
    return folder


@pytest.fixture(scope="module")
def local_output(corpus, saved_model, tmp_path_factory):
    import fineclass
    from fineclass.infer import read_output

    out = tmp_path_factory.mktemp("ray-local") / "out"
    fineclass.classify(str(corpus), model=saved_model, output=out, shard_rows=SHARD_ROWS, progress=False)
    return read_output(out)


def _ledger(folder: Path) -> list[dict]:
    path = folder / "_ledger.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    got, want = got.sort_by("id"), want.sort_by("id")
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    for name in ("label", "status", "truncated"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    for name in [c for c in want.column_names if c.startswith("p_")] + ["confidence"]:
        a = got.column(name).to_numpy(zero_copy_only=False).astype(float)
        b = want.column(name).to_numpy(zero_copy_only=False).astype(float)
        np.testing.assert_allclose(a, b, atol=1e-5, equal_nan=True, err_msg=name)


@needs_ray
def test_ray_output_equals_local_engine(ray_local, corpus, saved_model, local_output, tmp_path):
    import fineclass
    from fineclass.infer import read_output

    out = tmp_path / "ray-out"
    summary = fineclass.classify(
        str(corpus), model=saved_model, output=out, shard_rows=SHARD_ROWS, engine="ray", num_actors=2
    )
    assert summary["engine"] == "ray" and summary["actors"] == 2 and summary["complete"]
    assert summary["rows_written"] == 240 and summary["shards_written"] == 5 and summary["empty"] == 2
    got = read_output(out)
    assert got.column("id").to_pylist() == list(range(240))  # row numbers across the three files, in order
    _assert_same(got, local_output)
    assert got.column("status").to_pylist()[7] == "empty_text" and got.column("label")[130].as_py() is None
    # the same shards, files and ledger as the local engine: each shard once, the same rows in each
    ledger = _ledger(out)
    assert sorted(e["shard"] for e in ledger) == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-{k:06d}.parquet" for k in range(5)]
    for e in ledger:
        ids = pq.read_table(out / e["file"]).column("id").to_pylist()
        assert ids == list(range(e["shard"] * SHARD_ROWS, min((e["shard"] + 1) * SHARD_ROWS, 240)))
    # the run record is the local engine's: a finished run resumes with nothing to do
    again = fineclass.classify(str(corpus), model=saved_model, output=out, shard_rows=SHARD_ROWS, progress=False)
    assert again["shards_skipped"] == 5 and again["rows_written"] == 0


@needs_ray
def test_killed_worker_is_retried_and_each_id_is_written_once(
    ray_local, corpus, saved_model, tiny_classifier, local_output, fault_dir, tmp_path
):
    """A run begun by the local engine (shards 0, 2, 4) is finished by Ray with the model passed as an object;
    the actor taking shard 1 dies before writing it, the one taking shard 3 right after writing it."""
    import fineclass
    from fineclass.infer import read_output

    out = tmp_path / "ray-out"
    first = fineclass.classify(
        str(corpus), model=saved_model, output=out, shard_rows=SHARD_ROWS, shard="0/2", progress=False
    )
    assert first["shards_written"] == 3
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    for marker in ("crash-1-before", "crash-3-after"):
        (fault_dir / marker).write_text("")
    summary = fineclass.classify(
        str(corpus), model=tiny_classifier, output=out, shard_rows=SHARD_ROWS, engine="ray", num_actors=2, max_retries=2
    )
    # both faults fired: the actors really died, and Ray restarted them and retried their shards
    assert (fault_dir / "crash-1-before.fired").exists() and (fault_dir / "crash-3-after.fired").exists()
    assert not (fault_dir / "crash-1-before").exists() and not (fault_dir / "crash-3-after").exists()
    assert summary["shards_skipped"] == 3 and summary["shards_written"] == 2 and summary["complete"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name in before} == before
    ledger = _ledger(out)
    assert sorted(e["shard"] for e in ledger) == [0, 1, 2, 3, 4]  # one line per shard, retries included
    assert not list(out.glob(".part-*.tmp"))
    got = read_output(out)
    ids = got.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 240 and sorted(ids) == list(range(240))
    _assert_same(got, local_output)


@needs_ray
def test_table_in_and_out_with_a_fitted_classifier(ray_local, reviews_small, tiny_classifier, tmp_path):
    """An in-memory table (with its own id column) and output=None: the table the local engine returns. A problem
    found inside a worker (a missing id) comes back as the FineclassError the local engine raises."""
    import polars as pl

    import fineclass

    data = reviews_small.with_columns((reviews_small["id"] * 10 + 3).alias("id"))
    got = fineclass.classify(data, model=tiny_classifier, engine="ray", num_actors=1, shard_rows=100)
    want = tiny_classifier.predict(data)
    assert got.column("id").to_pylist() == want.column("id").to_pylist() == [i * 10 + 3 for i in range(240)]
    _assert_same(got, want)
    holes = data.with_columns(pl.when(pl.col("id") == 1503).then(None).otherwise(pl.col("id")).alias("id"))
    with pytest.raises(FineclassError, match="missing values") as e:
        fineclass.classify(
            holes,
            model=tiny_classifier,
            output=tmp_path / "o",
            engine="ray",
            num_actors=1,
            shard_rows=100,
            max_retries=0,
        )
    assert e.value.argument == "id"
    assert 1 not in {x["shard"] for x in _ledger(tmp_path / "o")}  # the shard with the missing id is not recorded
    # every setting of classify() reaches the engine: shard="1/2" of 3 shards is shard 1 alone
    half = fineclass.classify(
        data,
        model=tiny_classifier,
        output=tmp_path / "half",
        engine="ray",
        num_actors=1,
        shard_rows=100,
        shard="1/2",
        progress=False,
    )
    assert half["shards_written"] == 1 and half["shard"] == "1/2" and not half["complete"]
    assert [x["shard"] for x in _ledger(tmp_path / "half")] == [1]


@needs_ray
def test_bad_settings_fail_before_any_work(ray_local, corpus, saved_model, tmp_path):
    import fineclass

    with pytest.raises(FineclassError, match="column `txt` not found") as e:
        fineclass.classify(str(corpus), model=saved_model, output=tmp_path / "a", text="txt", engine="ray")
    assert e.value.argument == "text"
    with pytest.raises(FineclassError, match="not the folder of a saved fineclass model") as e:
        fineclass.classify(str(corpus), model=str(corpus), output=tmp_path / "b", engine="ray")
    assert e.value.argument == "model"
    with pytest.raises(FineclassError, match=r"need 1 GPU\(s\); the Ray cluster has 0") as e:
        fineclass.classify(
            str(corpus), model=saved_model, output=tmp_path / "c", engine="ray", num_actors=1, gpus_per_actor=1
        )
    assert e.value.argument == "num_actors"
    with pytest.raises(FineclassError, match=r"need 3 CPU\(s\); the Ray cluster has 2"):
        fineclass.classify(str(corpus), model=saved_model, output=tmp_path / "d", engine="ray", num_actors=3)
    with pytest.raises(FineclassError, match="`num_actors` must be a positive whole number"):
        fineclass.classify(str(corpus), model=saved_model, output=tmp_path / "e", engine="ray", num_actors=0)
    for bad in (-1, float("nan"), "1"):
        with pytest.raises(FineclassError, match="`gpus_per_actor` must be a finite number, 0 or more") as e:
            fineclass.classify(str(corpus), model=saved_model, output=tmp_path / "f", engine="ray", gpus_per_actor=bad)
        assert e.value.argument == "gpus_per_actor"
    assert not (tmp_path / "c" / "_ledger.jsonl").exists()


def test_ray_stays_optional(saved_model, tmp_path):
    """`import fineclass` and the local engine never import Ray; without Ray, engine='ray' says how to get it."""
    script = f"""
import sys
import fineclass
assert "ray" not in sys.modules, "import fineclass imported ray"
out = fineclass.classify({{"text": ["a fine film", "dull"]}}, model={saved_model!r}, output={str(tmp_path / "o")!r},
                         progress=False)
assert out["rows_written"] == 2 and "ray" not in sys.modules, "the local engine imported ray"
sys.modules["ray"] = None  # as if Ray were not installed
try:
    fineclass.classify({{"text": ["a fine film"]}}, model={saved_model!r}, output={str(tmp_path / "p")!r},
                       engine="ray")
except fineclass.FineclassError as e:
    assert "pip install fineclass[ray]" in str(e) and e.argument == "engine", str(e)
    print("ok")
"""
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
