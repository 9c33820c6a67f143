"""Issue 21, item 8: ``fineclass train -o DIR`` checks DIR before training, so a trained model is never lost to it.

Before the fix the folder was checked by ``save()`` after training: an existing folder (without ``--overwrite``) or
one that cannot be created cost the whole training run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ._helpers import run_python

pytestmark = pytest.mark.reliability


@pytest.fixture()
def small_csv(tmp_path) -> Path:
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(8):
            w.writerow([f"a {'good' if i % 2 else 'bad'} film number {i}", "pos" if i % 2 else "neg"])
    return path


def _train_cli(data: Path, model: str, output: Path, *extra: str):
    argv = ["train", str(data), "--model", model, "-o", str(output), "--epochs", "1", *extra]
    code = f"""
        import sys
        from fineclass.cli import main
        sys.exit(main({argv!r}))
    """
    return run_python(code, timeout=300)


def _cases(tmp_path: Path) -> dict[str, Path]:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("someone's work")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return {"existing": existing, "under-a-file": blocker / "model"}


@pytest.mark.parametrize("case", ["existing", "under-a-file"])
def test_a_bad_output_folder_is_refused_before_training(tiny_bert, small_csv, tmp_path, case):
    output = _cases(tmp_path)[case]
    r = _train_cli(small_csv, tiny_bert, output)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "output" in r.stderr and str(output) in r.stderr, out
    assert "fineclass: trained" not in out, "the model was trained before the output folder was checked"
    assert "Traceback" not in out
    if case == "existing":
        assert (output / "notes.txt").read_text() == "someone's work"


def test_a_good_output_folder_still_gets_the_model(tiny_bert, small_csv, tmp_path):
    output = tmp_path / "new" / "model"
    r = _train_cli(small_csv, tiny_bert, output)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (output / "fineclass.json").is_file()
    assert not list(output.parent.glob(".fineclass-write-check.*"))
    r = _train_cli(small_csv, tiny_bert, output, "--overwrite")  # replacing a saved model is allowed
    assert r.returncode == 0, r.stdout + r.stderr
