"""Faults: a training process killed with SIGKILL and resumed; damaged checkpoints and shards; a full disk.

SIGKILL and resume of `classify` itself, and damaged output shards, are tested in tests/test_infer.py; checkpoint
resume within one process in tests/test_train.py. Here the training process really dies, and the disk really fills.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass import FineclassError
from fineclass.infer import LEDGER, read_output

from ._helpers import fill_disk, mount_tmpfs, popen_python, unmount

pytestmark = pytest.mark.reliability

# early_stopping off, so that every run trains every epoch and the kill always lands before the end
CFG = {"epochs": 6, "max_length": 32, "batch_size": 16, "early_stopping": None, "seed": 7}


def assert_same_predictions(a: pa.Table, b: pa.Table, atol: float = 1e-5) -> None:
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    for name in a.column_names:
        if name.startswith("p_") or name == "confidence":
            np.testing.assert_allclose(
                a.column(name).to_numpy(), b.column(name).to_numpy(), atol=atol, rtol=0, err_msg=name
            )
        else:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, reviews_small):
    """The same training run, never interrupted and without checkpoints."""
    return fineclass.train(reviews_small, model=tiny_bert, config=CFG, progress=False)


# ---------------------------------------------------------------------- SIGKILL during training
CHILD = """
import pathlib, polars as pl, fineclass
data = pl.read_parquet({data!r})
fineclass.train(data, model={model!r}, config={config!r}, progress=False)
pathlib.Path({done!r}).write_text("finished")
"""


def test_training_killed_with_sigkill_resumes_to_the_same_model(
    tiny_bert, reviews_small, reviews_parquet, uninterrupted, tmp_path
):
    ck, done = tmp_path / "ck", tmp_path / "finished"
    config = {**CFG, "checkpoint_dir": str(ck)}
    proc = popen_python(
        CHILD.format(data=reviews_parquet, model=tiny_bert, config=config, done=str(done)), tmp_path / "child.log"
    )
    try:
        deadline = time.monotonic() + 300
        while not (ck / "latest.json").exists():
            assert proc.poll() is None, (
                "the training process ended before its first checkpoint:\n" + (tmp_path / "child.log").read_text()
            )
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: like a power cut or the OOM killer
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not done.exists()
    killed_at = json.loads((ck / "latest.json").read_text())["epoch"]
    assert 0 <= killed_at < CFG["epochs"] - 1, "the kill should land before the last epoch"

    resumed = fineclass.train(reviews_small, model=tiny_bert, config=config, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history_] == list(range(1, CFG["epochs"] + 1))
    for h_resumed, h_full in zip(resumed.history_, uninterrupted.history_):
        assert h_resumed["train_loss"] == pytest.approx(h_full["train_loss"], abs=1e-5)
    assert resumed.manifest_["best_epoch"] == uninterrupted.manifest_["best_epoch"]
    assert_same_predictions(uninterrupted.predict(reviews_small), resumed.predict(reviews_small))


# ---------------------------------------------------------------------- damaged checkpoints
@pytest.fixture(scope="module")
def two_epochs(tiny_bert, reviews_small, tmp_path_factory):
    """A finished checkpoint folder of a 2-epoch run (copied before each damage)."""
    ck = tmp_path_factory.mktemp("ck2") / "ck"
    config = {**CFG, "epochs": 2, "checkpoint_dir": str(ck)}
    fineclass.train(reviews_small, model=tiny_bert, config=config, progress=False)
    return ck, config


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot a safetensors file" * 10)


def _other_shapes(path: Path) -> None:  # a well-formed file whose tensors belong to another model
    import torch
    from safetensors.torch import save_file

    save_file({"classifier.weight": torch.zeros(3, 3)}, str(path))


DAMAGE = {  # what is spoiled, how, and what the error must name
    "truncated weights": ("epoch-1/trainable.safetensors", _truncate, "trainable.safetensors"),
    "garbled optimizer": ("epoch-1/optimizer.safetensors", _garble, "optimizer.safetensors"),
    "missing best weights": ("epoch-1/best.safetensors", Path.unlink, "best.safetensors"),
    "truncated state": ("epoch-1/state.json", _truncate, "state.json"),
    "truncated pointer": ("latest.json", _truncate, "latest.json"),
    "pointer to a missing epoch": (
        "latest.json",
        lambda p: p.write_text('{"epoch": 7, "folder": "epoch-7"}'),
        "epoch-7",
    ),
    "weights of another model": ("epoch-1/trainable.safetensors", _other_shapes, "do not match"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_detected_and_named(two_epochs, tiny_bert, reviews_small, tmp_path, damage):
    source, config = two_epochs
    ck = tmp_path / "ck"
    shutil.copytree(source, ck)
    relative, spoil, named = DAMAGE[damage]
    spoil(ck / relative)
    with pytest.raises(FineclassError) as e:
        fineclass.train(
            reviews_small, model=tiny_bert, config={**config, "checkpoint_dir": str(ck)}, resume=True, progress=False
        )
    assert e.value.argument == "checkpoint_dir"
    assert named in str(e.value) and str(ck) in str(e.value), str(e.value)


def test_leftovers_of_a_kill_during_a_checkpoint_write_are_ignored(tiny_bert, reviews_small, tmp_path):
    """A kill while epoch 3's checkpoint is written leaves a half folder and a half pointer; neither is used."""
    ck = tmp_path / "ck"
    config = {**CFG, "epochs": 3, "checkpoint_dir": str(ck)}
    full = fineclass.train(reviews_small, model=tiny_bert, config=config, progress=False)
    shutil.rmtree(ck / "epoch-2")
    (ck / "latest.json").write_text('{"epoch": 1, "folder": "epoch-1"}')
    (ck / ".epoch-2.abc123").mkdir()
    (ck / ".epoch-2.abc123" / "trainable.safetensors").write_bytes(b"half")
    (ck / ".latest.json.xyz").write_text('{"epoch": 2, "fol')
    resumed = fineclass.train(reviews_small, model=tiny_bert, config=config, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    assert_same_predictions(full.predict(reviews_small), resumed.predict(reviews_small))


# ---------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    reason = mount_tmpfs(folder, "4m")
    if reason:
        pytest.skip(reason)
    try:
        yield folder
    finally:
        unmount(folder)


def _is_disk_full(exc: BaseException) -> bool:
    """The error a full disk raised, whatever layer reported it (OSError, or a library's own error)."""
    return (
        (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
        or "No space left" in str(exc)
        or isinstance(exc, FineclassError)
    )


def _ledger_entries(out: Path) -> list[dict]:
    entries = []
    if (out / LEDGER).exists():
        for line in (out / LEDGER).read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by the full disk; the reader skips it too
    return entries


def test_classify_into_a_full_disk_never_lists_a_half_written_shard(tiny_classifier, reviews_small, small_disk):
    data = reviews_small.select("id", "text")
    out = small_disk / "out"
    filler = fill_disk(small_disk, leave=20_000)
    with pytest.raises(Exception) as e:
        fineclass.classify(data, model=tiny_classifier, output=out, shard_rows=20, progress=False)
    assert _is_disk_full(e.value), repr(e.value)
    entries = _ledger_entries(out)
    for entry in entries:  # every shard the ledger lists is complete
        table = pq.read_table(out / entry["file"])
        assert table.num_rows == entry["rows"]
        assert table.column("id").to_pylist() == data["id"].to_list()[entry["shard"] * 20 :][: entry["rows"]]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "temporary files were left behind"
    assert len(entries) < 12, "the disk should have filled up before the end"

    filler.unlink()  # free the space, then finish the run
    summary = fineclass.classify(data, model=tiny_classifier, output=out, shard_rows=20, progress=False)
    assert summary["shards_skipped"] == len({e["shard"] for e in entries})
    result = read_output(out)
    assert result.column("id").to_pylist() == data["id"].to_list()  # every id exactly once, in order
    assert_same_predictions(tiny_classifier.predict(data), result)


def test_saving_a_model_into_a_full_disk_leaves_no_half_model(tiny_classifier, reviews_small, small_disk):
    target = small_disk / "models" / "sentiment"
    target.parent.mkdir()
    filler = fill_disk(small_disk, leave=60_000)  # less than the weights need
    with pytest.raises(Exception) as e:
        tiny_classifier.save(target)
    assert _is_disk_full(e.value), repr(e.value)
    assert not target.exists(), "a half-written model folder is left where a finished one would be"
    assert list(target.parent.iterdir()) == [], "temporary files were left behind"
    with pytest.raises(FineclassError):
        fineclass.load(target)

    filler.unlink()
    tiny_classifier.save(target)
    texts = reviews_small.select("id", "text").head(40)
    assert_same_predictions(tiny_classifier.predict(texts), fineclass.load(target).predict(texts))


def test_training_checkpoints_into_a_full_disk_resume_after_space_is_freed(
    tiny_bert, reviews_small, uninterrupted, small_disk
):
    ck = small_disk / "ck"
    config = {**CFG, "checkpoint_dir": str(ck)}
    filler = fill_disk(small_disk, leave=2_500_000)  # room for about two epochs' checkpoints
    with pytest.raises(Exception) as e:
        fineclass.train(reviews_small, model=tiny_bert, config=config, progress=False)
    assert _is_disk_full(e.value), repr(e.value)
    pointer = json.loads((ck / "latest.json").read_text())
    assert pointer["epoch"] < CFG["epochs"] - 1
    assert not [p.name for p in ck.iterdir() if p.name.startswith(".")], "temporary files were left behind"

    filler.unlink()
    resumed = fineclass.train(reviews_small, model=tiny_bert, config=config, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history_] == list(range(1, CFG["epochs"] + 1))
    assert_same_predictions(uninterrupted.predict(reviews_small), resumed.predict(reviews_small))
    # only the newest two checkpoints are kept, so the space they take does not grow with the epochs
    assert sorted(p.name for p in ck.iterdir()) == ["epoch-4", "epoch-5", "latest.json"]
