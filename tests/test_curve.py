"""Learning curves end to end: training at several sizes and seeds on real data, the plot, the checkpoint."""

from __future__ import annotations

import json
import warnings

import polars as pl
import pytest

import fineclass
from fineclass import FineclassError
from fineclass.cli import main as cli_main

FAST = {"epochs": 1, "max_length": 32, "batch_size": 16}


def _png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_single_label_curve_runs_every_size_and_seed_and_plots(tiny_bert, reviews_small, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = fineclass.learning_curve(
            reviews_small,
            sizes=[80, 20, 40],
            seeds=[0, 1],
            model=tiny_bert,
            config=FAST,
            target=0.99,
            plot=tmp_path / "curve.png",
            progress=False,
        )
    runs = lc.table.to_pylist()
    assert [(r["size"], r["seed"]) for r in runs] == [(s, seed) for seed in (0, 1) for s in (20, 40, 80)]
    assert lc.metric == "accuracy" and all(0 <= r["score"] <= 1 for r in runs)
    # the test split is 20% of 240 reviews, so every score is a multiple of 1/48
    assert all(abs(r["score"] * 48 - round(r["score"] * 48)) < 1e-9 for r in runs)
    summary = lc.summary().to_pylist()
    assert [r["size"] for r in summary] == [20, 40, 80] and all(r["runs"] == 2 for r in summary)
    assert lc.fit is not None and lc.needed is not None and lc.needed.column("target").to_pylist() == [0.99]
    assert _png(lc.plot) and lc.plot == str(tmp_path / "curve.png")
    assert "n=    80" in repr(lc)


def test_dimension_level_curve_from_a_long_label_table(tiny_bert, flourishing, tmp_path):
    """The flourishing shape: labels in long format (id, dimension, level), the test split given as ids."""
    tweets = pl.read_parquet(flourishing / "tweets.parquet")
    split = pl.read_parquet(flourishing / "labeled_ids.parquet")
    labels = pl.read_parquet(flourishing / "labels.parquet").select("id", "dimension", "level")
    train_ids = split.filter(pl.col("split") == "train")["id"].head(60).to_list()
    test_ids = split.filter(pl.col("split") == "test")["id"].head(30).to_list()
    docs = tweets.filter(pl.col("id").is_in(train_ids + test_ids)).select("id", "text")
    lc = fineclass.learning_curve(
        docs,
        labels=labels.filter(pl.col("id").is_in(train_ids + test_ids)),
        label=("dimension", "level"),
        test=test_ids,
        sizes=[10, 20, 40],
        seeds=[0],
        model=tiny_bert,
        config=FAST,
        plot=None,
        progress=False,
    )
    assert lc.metric == "jaccard" and lc.plot is None
    assert lc.table.column("size").to_pylist() == [10, 20, 40]
    assert all(0 <= s <= 1 for s in lc.table.column("score").to_pylist())
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(
            docs,
            labels=labels,
            label=("dimension", "level"),
            test=test_ids,
            sizes=[10, 20, 100],
            seeds=[0],
            model=tiny_bert,
            config=FAST,
            plot=None,
            progress=False,
        )
    assert e.value.argument == "sizes" and "60 documents left for training" in str(e.value)
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(
            docs,
            labels=labels,
            label=("dimension", "level"),
            test=test_ids + ["nope"],
            sizes=[10, 20, 40],
            seeds=[0],
            model=tiny_bert,
            config=FAST,
            plot=None,
            progress=False,
        )
    assert e.value.argument == "test" and "1 ids" in str(e.value)


def test_an_interrupted_curve_resumes_from_its_checkpoint(tiny_bert, reviews_small, tmp_path):
    ck = tmp_path / "runs.jsonl"
    first = fineclass.learning_curve(
        reviews_small, sizes=[20, 40], seeds=[0], model=tiny_bert, config=FAST, plot=None, progress=False, checkpoint=ck
    )
    lines = ck.read_text().splitlines()
    assert len(lines) == 2
    # a crash while the next line was being written leaves half a line: that run is trained again
    ck.write_text("\n".join(lines) + '\n{"key": "abc", "run": {"si')
    more = fineclass.learning_curve(
        reviews_small,
        sizes=[20, 40, 80],
        seeds=[0],
        model=tiny_bert,
        config=FAST,
        plot=None,
        progress=False,
        checkpoint=ck,
    )
    runs = more.table.to_pylist()
    # the recorded runs come back as they were recorded (their elapsed seconds too), only n=80 is trained
    assert runs[:2] == first.table.to_pylist()
    assert runs[2]["size"] == 80
    recorded = [json.loads(x)["run"] for x in ck.read_text().splitlines() if x.startswith('{"key"') and x.endswith("}")]
    assert [r["size"] for r in recorded] == [20, 40, 80]
    # other settings, same checkpoint: refused, naming the argument and the fix
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(
            reviews_small,
            sizes=[20, 40],
            seeds=[0],
            model=tiny_bert,
            config={**FAST, "epochs": 2},
            plot=None,
            progress=False,
            checkpoint=ck,
        )
    assert e.value.argument == "checkpoint" and "delete this one" in str(e.value)


def test_curve_command_line_writes_runs_and_plot(tiny_bert, reviews_small, tmp_path, capsys):
    data = tmp_path / "reviews.parquet"
    reviews_small.write_parquet(data)
    out, png = tmp_path / "runs.csv", tmp_path / "lc.png"
    rc = cli_main(
        [
            "curve",
            str(data),
            "--model",
            tiny_bert,
            "--sizes",
            "20,40,60",
            "--seeds",
            "0",
            "--config",
            json.dumps(FAST),
            "--plot",
            str(png),
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    assert "LearningCurve (accuracy)" in capsys.readouterr().out
    runs = pl.read_csv(out)
    assert runs["size"].to_list() == [20, 40, 60] and runs["metric"].unique().to_list() == ["accuracy"]
    assert _png(png)
    rc = cli_main(["curve", str(data), "--model", tiny_bert, "--sizes", "1,2", "--plot", str(png)])
    assert rc == 2 and "`sizes`" in capsys.readouterr().err


def test_the_result_keeps_its_metric_target_and_fitted_curve():
    import numpy as np
    import pyarrow as pa

    from fineclass.curve import LearningCurve
    from fineclass.evaluation import fit_curve, labels_needed

    sizes = np.repeat([100, 200, 400, 800], 2)
    scores = 0.9 - 2.0 * sizes**-0.5 + np.tile([0.01, -0.01], 4)
    runs = pa.table({"size": sizes, "seed": np.tile([0, 1], 4), "score": scores})
    fit = fit_curve(sizes, scores, seed=0)
    lc = LearningCurve(runs, "macro_f1", fit, labels_needed(fit, 0.85), None, target=0.85)
    out = lc.to_dict()
    assert out["metric"] == "macro_f1" and out["target"] == 0.85
    assert out["fit"]["a"] == pytest.approx(fit.a) and out["fit"]["model"] == "a - b * n^(-c)"
    grid = out["fitted"]
    assert grid.column("size")[0].as_py() == pytest.approx(100) and grid.column("size")[-1].as_py() == pytest.approx(
        3200
    )
    assert np.allclose(grid.column("score").to_numpy(), fit.predict(grid.column("size").to_numpy()))
    assert out["needed"].num_rows == 1
    short = LearningCurve(runs.slice(0, 4), "accuracy", None, None, None).to_dict()
    assert short["metric"] == "accuracy" and "fitted" not in short and short["target"] is None


def test_a_curve_passes_the_codebook_and_settings_to_every_run(tiny_bert, reviews_small, tmp_path):
    """The codebook-aware methods need ``codebook=``; the curve hands it, and any train() keyword, to each run."""
    book = {
        0: {"name": "negative", "description": "a negative movie review: the critic disliked the film"},
        1: {"name": "positive", "description": "a positive movie review: the critic liked the film"},
    }
    ck = tmp_path / "runs.jsonl"
    common = dict(sizes=[20, 40], seeds=[0], model=tiny_bert, method="codebook", plot=None, progress=False)
    lc = fineclass.learning_curve(reviews_small, codebook=book, max_length=32, checkpoint=ck, **common)
    assert lc.table.column("size").to_pylist() == [20, 40]
    assert all(0 <= s <= 1 for s in lc.table.column("score").to_pylist())
    # the codebook is part of what the checkpoint records: another codebook is another curve
    other = {k: {**v, "description": v["description"].upper()} for k, v in book.items()}
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(reviews_small, codebook=other, max_length=32, checkpoint=ck, **common)
    assert e.value.argument == "checkpoint"
    # a TrainConfig setting as a keyword is checked like train()'s, and the curve's own arguments are refused
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(reviews_small, codebook=book, max_lenght=32, **common)
    assert "max_lenght" in str(e.value)
    with pytest.raises(FineclassError) as e:
        fineclass.learning_curve(reviews_small, codebook=book, resume=True, **common)
    assert e.value.argument == "resume" and "leave it out" in str(e.value)
