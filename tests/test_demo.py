"""The README's first command, `fineclass demo`, at a small size: its outputs, its figures, its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from fineclass import FineclassError
from fineclass.demo import demo_split, run_demo


def test_the_demo_writes_its_outputs_and_beats_chance(tmp_path, movie_reviews):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "fineclass", "demo", "--output", str(out), "--n-train", "96", "--n-test", "200",
         "--epochs", "1", "--method", "description"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "description" and summary["n_train"] == 96 and summary["n_test"] == 200
    model_row, tfidf_row = summary["metrics"]
    assert model_row["model"] == "fineclass description (minilm)"
    # the class vectors start at the two descriptions: even 96 reviews put it well above chance (0.5)
    assert model_row["accuracy_lower"] > 0.55, model_row
    assert model_row["accuracy_lower"] <= model_row["accuracy"] <= model_row["accuracy_upper"]
    pred = pq.read_table(out / "predictions.parquet")
    _, test = demo_split(96, 200, 0)
    assert pred.num_rows == 200 and pred.column("id").to_pylist() == test.column("id").to_pylist()
    assert (out / "model" / "fineclass.json").is_file()
    assert pq.read_table(out / "metrics.parquet").num_rows == 2
    assert "accuracy" in run.stdout and tfidf_row["model"] in run.stdout


def test_the_demo_names_a_bad_method_or_size(tmp_path):
    with pytest.raises(FineclassError) as e:
        run_demo(tmp_path / "x", n_train=10, n_test=10, method="generative")
    assert e.value.argument == "method" and "head or description" in str(e.value)
    with pytest.raises(FineclassError) as e:
        demo_split(30000, 10000)
    assert e.value.argument == "n_train"
