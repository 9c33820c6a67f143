"""Issue 21's data and run items: what goes in is read as meant, or refused before anything is written.

Each test is a reproduction from the issue, made small; each failed before its fix.
"""

from __future__ import annotations

import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass import FineclassError
from fineclass.data import labelled

from ._helpers import popen_python

pytestmark = pytest.mark.reliability


def _csv(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------- 1. blank labels are missing labels
def test_blank_labels_are_refused_with_their_ids_in_training(tmp_path):
    path = _csv(tmp_path / "x.csv", "id,text,label\n1,good film,pos\n2,bad film,neg\n3,a film,\n4,another,   \n")
    with pytest.raises(FineclassError, match=r"2 documents have no label \(a missing or blank value\).*ids: 3, 4") as e:
        labelled(path)
    assert e.value.argument == "label"
    # nulls and blanks are the same thing: the same message for the same rows given as nulls
    with pytest.raises(FineclassError, match=r"2 documents have no label \(a missing or blank value\).*ids: 3, 4"):
        labelled({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"], "label": ["pos", "neg", None, None]})


def test_blank_entries_in_label_lists_are_refused_and_blank_long_rows_read_as_null_rows(tmp_path):
    docs = {"id": [1, 2, 3], "text": ["a", "b", "c"]}
    with pytest.raises(FineclassError, match=r"ids: 2") as e:
        labelled({**docs, "label": [["x"], ["y", " "], []]})
    assert e.value.argument == "label"
    # in a long label table a row without a label means "no label from this row", blank or null alike
    blank = labelled(docs, labels=_csv(tmp_path / "labels.csv", "id,label\n1,x\n2,\n3,y\n"))
    null = labelled(docs, labels=pa.table({"id": [1, 2, 3], "label": ["x", None, "y"]}))
    assert blank.spec.classes == null.spec.classes == ["x", "y"]
    assert (blank.targets == null.targets).all()


def test_blank_truth_labels_are_refused_in_evaluate(tmp_path):
    truth = _csv(tmp_path / "truth.csv", "id,label\n1,pos\n2,neg\n3,\n4,pos\n")
    preds = pa.table({"id": [1, 2, 3, 4], "label": ["pos", "neg", "neg", "pos"]})
    with pytest.raises(FineclassError, match=r"1 documents in `truth` have no label \(ids: 3\)") as e:
        fineclass.evaluate(preds, truth)
    assert e.value.argument == "truth"


# ---------------------------------------------------------------------- 13. conflicting duplicate ids in the truth
def test_repeated_truth_ids_warn_before_multi_label_metrics(tmp_path):
    from fineclass.evaluation import EvaluationWarning

    truth = _csv(tmp_path / "truth.csv", "id,label\n1,pos\n1,neg\n2,neg\n3,pos\n")
    preds = pa.table({"id": [1, 2, 3], "label": ["pos", "neg", "pos"]})
    with pytest.warns(EvaluationWarning, match=r"1 id on more than one row \(ids: '?1'?\).*kind='single'"):
        fineclass.evaluate(preds, truth)
    with pytest.raises(FineclassError, match=r"two different labels for document 1") as e:
        fineclass.evaluate(preds, truth, kind="single")
    assert e.value.argument == "truth"
    with warnings.catch_warnings():  # the user said what the rows mean: no warning
        warnings.simplefilter("error", EvaluationWarning)
        fineclass.evaluate(preds, truth, kind="multi")


# ---------------------------------------------------------------------- 5. Parquet folders that disagree on the id
def _classify(data, model, out, **kw):
    return fineclass.classify(data, model=model, output=out, shard_rows=4, progress=False, **kw)


def _no_shard_written(out) -> bool:
    return not out.exists() or not [p for p in out.iterdir() if p.name.startswith(("part-", ".part-"))]


def _refused_before_writing(data, model, out, match: str, argument: str) -> None:
    with pytest.raises(FineclassError, match=match) as e:
        _classify(data, model, out)
    assert e.value.argument == argument
    assert _no_shard_written(out)


def test_parquet_files_with_different_id_types_are_refused_before_the_first_shard(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["good", "bad", "fine"]}), folder / "a.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["dull", "great"]}), folder / "b.parquet")
    out = tmp_path / "out"
    with pytest.raises(
        FineclassError, match=r"id column `id` is int64 in .*a.parquet.* but string in .*b.parquet"
    ) as e:
        _classify(folder, tiny_classifier, out)
    assert e.value.argument == "id"
    assert _no_shard_written(out)


def test_a_parquet_file_without_the_id_column_is_refused_not_given_row_numbers(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [101, 102, 103], "text": ["good", "bad", "fine"]}), folder / "a.parquet")
    pq.write_table(pa.table({"text": ["dull", "great"]}), folder / "b.parquet")
    _refused_before_writing(
        folder, tiny_classifier, tmp_path / "out", r"1 files have an id column `id` but 1 do not.*b.parquet", "id"
    )


def test_csv_files_with_different_id_types_are_refused_before_the_first_shard(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _csv(folder / "a.csv", "id,text\n1,good\n2,bad\n3,fine\n4,ok\n5,meh\n")
    _csv(folder / "b.csv", "id,text\nx,dull\ny,great\n")
    out = tmp_path / "out"
    with pytest.raises(FineclassError, match=r"id column `id` is int64 in .*a.csv.* but string in .*b.csv"):
        _classify(folder, tiny_classifier, out)
    assert _no_shard_written(out)


# ---------------------------------------------------------------------- 11. encodings and delimiters
def test_a_latin1_csv_is_reported_as_not_utf8_with_the_fix(tiny_classifier, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,text\n1,un film très réussi\n2,mauvais\n".encode("latin-1"))
    for call in (
        lambda: _classify(str(path), tiny_classifier, tmp_path / "out"),
        lambda: fineclass.as_table(str(path)),
    ):
        with pytest.raises(FineclassError, match=r"is not UTF-8.*Save it as UTF-8") as e:
            call()
        assert e.value.argument == "data"


def test_a_tsv_file_is_read_as_tab_separated(tiny_classifier, tmp_path):
    path = _csv(tmp_path / "docs.tsv", "id\ttext\n7\ta good, solid film\n8\tbad, bad, bad\n")
    table = fineclass.as_table(path)
    assert table.column("id").to_pylist() == [7, 8]
    assert table.column("text").to_pylist() == ["a good, solid film", "bad, bad, bad"]
    _classify(path, tiny_classifier, tmp_path / "out")
    assert fineclass.read_output(tmp_path / "out").column("id").to_pylist() == [7, 8]


# ---------------------------------------------------------------------- 4. the run's identity: input content, weights
def test_resume_refuses_a_csv_input_edited_in_place_at_the_same_size(tiny_classifier, tmp_path):
    path = tmp_path / "docs.csv"
    note = "x" * 10_000  # a column not read, so that the edit lies before the file's last 64 KB
    rows = [f"{i},a {'good' if i % 2 else 'poor'} film number {i:02d},{note}" for i in range(12)]
    path.write_text("id,text,note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    _classify(str(path), tiny_classifier, out)
    before = path.stat().st_size
    path.write_text(path.read_text(encoding="utf-8").replace("good film number 01", "gold film number 01"))
    assert path.stat().st_size == before
    with pytest.raises(FineclassError, match=r"a different input: shard 0 differs.*new output folder") as e:
        _classify(str(path), tiny_classifier, out)
    assert e.value.argument == "output"


def _other_weights(clf, folder):
    """The same classifier (same training record) with one tensor changed, saved to ``folder``."""
    import torch

    other = fineclass.load(clf.save(folder / "a"))
    with torch.no_grad():
        p = next(t for name, t in other.module_.named_parameters() if name.endswith("bias"))
        p.add_(0.5)
    assert other.manifest_ == fineclass.load(folder / "a").manifest_
    return other.save(folder / "b"), other


def test_resume_refuses_a_different_model_with_the_same_training_record(tiny_classifier, tmp_path):
    a = tiny_classifier.save(tmp_path / "models" / "saved")
    b, b_in_memory = _other_weights(tiny_classifier, tmp_path / "models")
    data = pa.table({"id": list(range(12)), "text": [f"a film, take {i}" for i in range(12)]})
    # a saved model and the same model in memory are one model: either finishes a run the other began
    for first, second, same in ((a, b, tiny_classifier), (tiny_classifier, b_in_memory, a)):
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        _classify(data, first, out, shard="0/2")  # half the shards, then "resume" with the other model
        with pytest.raises(FineclassError, match=r"another run \(a different model.*other weights") as e:
            _classify(data, second, out)
        assert e.value.argument == "output"
        _classify(data, same, out)
        assert fineclass.read_output(out).column("id").to_pylist() == list(range(12))


# ---------------------------------------------------------------------- 6. unfinished, empty and self-reading runs
def test_read_output_warns_on_an_unfinished_csv_run(tiny_classifier, tmp_path):
    path = _csv(tmp_path / "docs.csv", "id,text\n" + "".join(f"{i},film {i}\n" for i in range(12)))
    out = tmp_path / "out"

    def stop_after_first_shard(k, table):  # a run that stops part-way (killed, or out of time)
        raise KeyboardInterrupt

    from fineclass import ledger

    real = ledger.Run.record
    try:
        ledger.Run.record = lambda self, entry: (real(self, entry), stop_after_first_shard(0, None))
        with pytest.raises(KeyboardInterrupt):
            _classify(path, tiny_classifier, out)
    finally:
        ledger.Run.record = real
    with pytest.warns(RuntimeWarning, match=r"holds 1 shards, but no job has read the whole input"):
        assert fineclass.read_output(out).num_rows == 4
    # a job's share of the shards: it read the whole file, so the count is known
    _classify(path, tiny_classifier, out, shard="1/3")
    with pytest.warns(RuntimeWarning, match=r"holds 2 of 3 shards; the run is not finished"):
        assert fineclass.read_output(out).num_rows == 8
    summary = _classify(path, tiny_classifier, out)
    assert summary["complete"] and summary["shards_skipped"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert fineclass.read_output(out).column("id").to_pylist() == list(range(12))


@pytest.mark.parametrize("kind", ["csv", "parquet", "table"])
def test_an_input_without_rows_is_refused_before_anything_is_written(tiny_classifier, tmp_path, kind):
    if kind == "csv":
        data = _csv(tmp_path / "empty.csv", "id,text\n")
    elif kind == "parquet":
        data = str(tmp_path / "empty.parquet")
        pq.write_table(pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}), data)
    else:
        data = pa.table({"text": pa.array([], pa.string())})
    _refused_before_writing(data, tiny_classifier, tmp_path / "out", r"`data` has no rows", "data")


def test_an_output_folder_inside_the_input_folder_is_refused(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "text": ["good", "bad"]}), folder / "a.parquet")
    with pytest.raises(FineclassError, match=r"lies inside the input folder") as e:
        _classify(str(folder), tiny_classifier, folder / "out")
    assert e.value.argument == "output"
    assert not (folder / "out").exists()


# ---------------------------------------------------------------------- 7. one writer per shard of an output folder
def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(tiny_classifier, tmp_path):
    import json
    import socket
    import subprocess
    import sys

    data = pa.table({"id": list(range(8)), "text": [f"film {i}" for i in range(8)]})
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process on this host holds the whole folder
        lock = out / "_lock-0-of-1.json"
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "since": "now"}))
        with pytest.raises(FineclassError, match=rf"written by another process \(pid {sleeper.pid}") as e:
            _classify(data, tiny_classifier, out)
        assert e.value.argument == "output"
        # a share that overlaps a live lock is refused too; one that does not overlap is not
        lock.rename(out / "_lock-1-of-2.json")
        with pytest.raises(FineclassError, match=r"written by another process"):
            _classify(data, tiny_classifier, out, shard="1/4")
        _classify(data, tiny_classifier, out, shard="0/2")
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is dead now: its lock is stale and taken over, and the run finishes
    summary = _classify(data, tiny_classifier, out)
    assert summary["complete"]
    assert not list(out.glob("_lock-0-of-1.json")), "the lock is released at the end"
    assert fineclass.read_output(out).column("id").to_pylist() == list(range(8))


# ---------------------------------------------------------------------- 11. errors instead of tracebacks
def test_an_output_folder_that_cannot_be_written_is_a_fineclass_error(tiny_classifier, tmp_path):
    data = pa.table({"id": [1, 2], "text": ["good", "bad"]})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "out", "/sys/fineclass-output"):  # under a file; on a read-only file system
        with pytest.raises(FineclassError, match=r"could not be written .*choose") as e:
            _classify(data, tiny_classifier, out)
        assert e.value.argument == "output"


def test_cli_config_json_and_evaluate_output_errors_are_fineclass_errors(tmp_path, capsys):
    from fineclass.cli import main

    docs = _csv(tmp_path / "docs.csv", "id,text,label\n1,good,pos\n2,bad,neg\n")
    assert main(["train", docs, "-o", str(tmp_path / "m"), "--config", "{epochs: 2}"]) == 2
    assert "--config is not valid JSON" in capsys.readouterr().err
    assert main(["train", docs, "-o", str(tmp_path / "m"), "--config", "[2]"]) == 2
    assert "--config must be a JSON object" in capsys.readouterr().err
    preds = _csv(tmp_path / "preds.csv", "id,label\n1,pos\n2,pos\n")
    truth = _csv(tmp_path / "truth.csv", "id,label\n1,pos\n2,neg\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["evaluate", preds, truth, "--bootstrap", "0", "--output", str(blocker / "metrics.csv")]) == 2
    assert "--output" in (err := capsys.readouterr().err) and "could not be written" in err
    assert main(["evaluate", preds, truth, "--bootstrap", "0", "--output", str(tmp_path / "metrics.txt")]) == 2
    captured = capsys.readouterr()
    assert "--output must end in .csv or .json" in captured.err
    assert "Evaluation" not in captured.out  # refused before the evaluation, not after it


def test_two_real_processes_on_one_folder_then_a_kill_and_a_takeover(tiny_classifier, tmp_path):
    """The issue's reproduction: a second classify on a folder in use is refused (it used to redo every shard and
    delete the first one's temporary file); after the first is killed, its stale lock is taken over."""
    import os
    import signal
    import time

    model = tiny_classifier.save(tmp_path / "model")
    n = 4000  # enough shards that the first process still runs when the second starts, on an idle machine too
    pq.write_table(
        pa.table({"id": list(range(n)), "text": [f"film {i}, rather long" for i in range(n)]}), tmp_path / "in.parquet"
    )
    out = tmp_path / "out"
    proc = popen_python(
        f"""
        import fineclass
        fineclass.classify({str(tmp_path / "in.parquet")!r}, model={model!r}, output={str(out)!r}, shard_rows=20,
                           progress=False)
        """,
        tmp_path / "first.log",
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "_ledger.jsonl").exists() and '"shard"' in (out / "_ledger.jsonl").read_text():
                break
            time.sleep(0.01)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        with pytest.raises(FineclassError, match=rf"written by another process \(pid {proc.pid} ") as e:
            fineclass.classify(str(tmp_path / "in.parquet"), model=model, output=out, shard_rows=20, progress=False)
        assert e.value.argument == "output"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = fineclass.classify(str(tmp_path / "in.parquet"), model=model, output=out, shard_rows=20, progress=False)
    assert summary["complete"] and summary["shards_skipped"] >= 1
    assert fineclass.read_output(out).column("id").to_pylist() == list(range(n))
