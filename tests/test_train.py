"""Training and prediction of the head method on real packaged models, in all three label shapes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import fineclass
from fineclass import FineclassError, TrainConfig

FAST = {"epochs": 1, "max_length": 32, "batch_size": 16}


@pytest.fixture(scope="module")
def flourishing_train(flourishing):
    tweets = pl.read_parquet(flourishing / "tweets.parquet")
    labels = pl.read_parquet(flourishing / "labels.parquet").filter(pl.col("split") == "train")
    ids = labels["id"].unique(maintain_order=True).head(96)
    return tweets.filter(pl.col("id").is_in(ids.implode())), labels.filter(pl.col("id").is_in(ids.implode()))


def _same_predictions(a: pa.Table, b: pa.Table):
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    for name in a.column_names:
        if name.startswith("p_"):
            np.testing.assert_allclose(a.column(name).to_numpy(), b.column(name).to_numpy(), atol=1e-6)
        else:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


def test_single_label_multiclass_with_codebook_on_minilm(flourishing_train, tmp_path):
    tweets, labels = flourishing_train
    top = labels["dimension"].value_counts(sort=True).head(4)["dimension"].to_list()
    first = labels.filter(pl.col("dimension").is_in(top)).group_by("id", maintain_order=True).first()
    codes = {d: i + 1 for i, d in enumerate(top)}  # integer codes with names, like CAP topics
    data = tweets.join(first.select("id", pl.col("dimension").replace_strict(codes).alias("topic")), on="id")
    clf = fineclass.train(
        data,
        label="topic",
        id="id",
        model="minilm",
        codebook={v: k for k, v in codes.items()},
        config={**FAST, "validation": 0.15},
        progress=False,
    )
    assert clf.spec_.kind == "single" and clf.classes_ == [1, 2, 3, 4]
    assert clf.spec_.names["1"] == top[0]
    pred = clf.predict(data)
    assert pred.column("id").to_pylist() == data["id"].to_list()
    assert pred.schema.field("label").type == pa.int64()
    probs = np.column_stack([pred.column(f"p_{c}").to_numpy() for c in clf.classes_])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert set(pred.column("label").to_pylist()) <= {1, 2, 3, 4}
    clf.save(tmp_path / "m")
    _same_predictions(pred, fineclass.load(tmp_path / "m").predict(data))


def test_multi_label_on_minilm(flourishing_train, tmp_path):
    tweets, labels = flourishing_train
    subjects = labels.group_by("id").agg(pl.col("dimension").alias("subjects"))
    data = tweets.join(subjects, on="id")
    clf = fineclass.train(data, label="subjects", model="minilm", config=FAST, progress=False)
    assert clf.spec_.kind == "multi"
    pred = clf.predict(data)
    assert pred.schema.field("labels").type == pa.list_(pa.string())
    assert 0.025 <= clf.thresholds_["presence"] <= 0.95  # the tuning grid (training.GRID)
    counts = pred.column("n_labels").to_pylist()
    assert counts == [len(x) for x in pred.column("labels").to_pylist()]
    clf.save(tmp_path / "m")
    _same_predictions(pred, fineclass.load(tmp_path / "m").predict(data))


def test_dimension_level_on_minilm_with_lora(flourishing_train, tmp_path):
    tweets, labels = flourishing_train
    clf = fineclass.train(
        tweets,
        labels=labels,
        label=("dimension", "level"),
        model="minilm",
        config={**FAST, "finetune": "lora", "lora_r": 4},
        progress=False,
    )
    assert clf.spec_.kind == "dimlevel" and clf.manifest_["finetune"] == "lora"
    pred = clf.predict(tweets)
    assert pred.num_rows == tweets.height
    long = fineclass.classifier.to_long(pred)
    assert set(long.column_names) == {"id", "dimension", "level", "confidence"}
    assert set(long.column("level").to_pylist()) <= {"low", "medium", "high"}
    assert long.num_rows == sum(pred.column("n_labels").to_pylist())
    clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "adapter" / "adapter_model.safetensors").exists()
    _same_predictions(pred, fineclass.load(tmp_path / "m").predict(tweets))


def test_fine_tuning_learns_on_real_reviews(movie_reviews):
    """MiniLM learns sentiment from 200 short reviews: clearly better than chance on 200 others."""
    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes").with_row_index("id")
    balanced = pl.concat([rt.filter(pl.col("label") == y).head(200) for y in (0, 1)]).sample(
        fraction=1.0, seed=3, shuffle=True
    )
    train, test = balanced.head(200), balanced.tail(200)
    clf = fineclass.train(
        train,
        model="minilm",
        progress=False,
        config={"epochs": 3, "batch_size": 8, "max_length": 40, "learning_rate": 1e-4},
    )
    losses = [h["train_loss"] for h in clf.history_]
    assert losses[-1] < losses[0]
    acc = float(np.mean(np.array(clf.predict(test).column("label").to_pylist()) == test["label"].to_numpy()))
    assert acc >= 0.62, acc  # chance is 0.5; 0.62 is more than 3 standard errors above it


def test_same_seed_same_predictions(tiny_bert, reviews_small):
    a = fineclass.train(reviews_small, model=tiny_bert, config=FAST, progress=False).predict(reviews_small)
    b = fineclass.train(reviews_small, model=tiny_bert, config=FAST, progress=False).predict(reviews_small)
    _same_predictions(a, b)


def test_checkpoint_resume_reaches_the_same_model(tiny_bert, reviews_small, tmp_path):
    cfg = {**FAST, "epochs": 3, "early_stopping": None}
    full = fineclass.train(
        reviews_small, model=tiny_bert, config={**cfg, "checkpoint_dir": str(tmp_path / "a")}, progress=False
    )
    part = fineclass.train(
        reviews_small,
        model=tiny_bert,
        config={**cfg, "epochs": 3, "checkpoint_dir": str(tmp_path / "b")},
        progress=False,
    )
    assert (tmp_path / "b" / "epoch-2" / "trainable.safetensors").exists()
    # drop the last epoch's checkpoint, as if the run had died during epoch 3, then resume
    import json
    import shutil

    shutil.rmtree(tmp_path / "b" / "epoch-2")
    (tmp_path / "b" / "latest.json").write_text(json.dumps({"epoch": 1, "folder": "epoch-1"}))
    resumed = fineclass.train(
        reviews_small,
        model=tiny_bert,
        resume=True,
        config={**cfg, "checkpoint_dir": str(tmp_path / "b")},
        progress=False,
    )
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    _same_predictions(full.predict(reviews_small), resumed.predict(reviews_small))
    del part


def test_existing_checkpoint_without_resume_is_refused(tiny_bert, reviews_small, tmp_path):
    cfg = {**FAST, "checkpoint_dir": str(tmp_path / "ck")}
    fineclass.train(reviews_small, model=tiny_bert, config=cfg, progress=False)
    with pytest.raises(FineclassError, match="resume=True") as e:
        fineclass.train(reviews_small, model=tiny_bert, config=cfg, progress=False)
    assert e.value.argument == "checkpoint_dir"


def test_a_class_too_small_for_the_validation_split(tiny_bert):
    data = {"text": [f"doc {i}" for i in range(9)], "label": ["a"] * 4 + ["b"] * 4 + ["c"]}
    with pytest.raises(FineclassError, match="fewer than 2 examples") as e:
        fineclass.train(data, model=tiny_bert, config=FAST, progress=False)
    assert e.value.argument == "label" and "'c'" in str(e.value)
    fineclass.train(data, model=tiny_bert, config={**FAST, "validation": 0}, progress=False)  # the fix works


@pytest.mark.parametrize("model,msg", [("no-such-model", "built-in alias"), ("./missing/folder", "neither")])
def test_unknown_model_names_the_argument(model, msg):
    with pytest.raises(FineclassError, match=msg) as e:
        fineclass.train({"text": ["a", "b"], "label": [0, 1]}, model=model, config={"validation": 0}, progress=False)
    assert e.value.argument == "model"


def test_config_checks_name_the_setting():
    with pytest.raises(FineclassError) as e:
        TrainConfig(epochs=0)
    assert e.value.argument == "epochs"
    with pytest.raises(FineclassError, match="unknown settings: epoch") as e:
        TrainConfig.from_dict({"epoch": 2})
    assert TrainConfig.from_dict({"epochs": 2.0}).epochs == 2  # R passes doubles
    with pytest.raises(FineclassError, match=r"\{text\}"):
        TrainConfig(prompt="Classify this")


def test_pickle_weights_are_refused(tiny_classifier, tmp_path):
    folder = tiny_classifier.save(tmp_path / "m")
    (tmp_path / "m" / "model" / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(FineclassError, match="pickle") as e:
        fineclass.load(folder)
    assert e.value.argument == "path"


def test_warnings_point_at_the_callers_line(tiny_bert, reviews_small):
    """A warning names the user's file and line, not a line inside fineclass, whether the call goes through
    fineclass.train() or Classifier.fit()."""
    import warnings

    data = pl.concat([reviews_small.head(24), reviews_small.tail(24)])
    for fit in (
        lambda: fineclass.train(data, model=tiny_bert, config={**FAST, "max_length": 8}, progress=False),
        lambda: fineclass.Classifier(model=tiny_bert, config={**FAST, "max_length": 8}).fit(data, progress=False),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit()
        truncation = [w for w in caught if "were truncated" in str(w.message)]
        assert truncation, [str(w.message) for w in caught]
        assert truncation[0].filename == __file__


def test_a_method_registered_by_name_trains_saves_and_loads(tiny_bert, reviews_small, tmp_path):
    """The core reaches methods through the registry only: a new method needs no edit of the training loop, the
    scorer, save or load. Its scoring_session is the Method default unless it declares one."""
    from fineclass.methods import Method, get_method, method_names, register
    from fineclass.methods.head import HeadMethod

    calls = []

    @register("head-recorded")
    class Recorded(HeadMethod):
        def probabilities(self, module, batch, spec):
            calls.append(len(batch["input_ids"]))
            return super().probabilities(module, batch, spec)

    try:
        assert "head-recorded" in method_names() and isinstance(get_method("head-recorded"), Recorded)
        clf = fineclass.train(
            reviews_small, model=tiny_bert, method="head-recorded", config={**FAST, "epochs": 1}, progress=False
        )
        first = clf.predict(reviews_small.head(20))
        assert sum(calls) >= 20 and clf.manifest_["method"] == "head-recorded"
        again = fineclass.load(clf.save(tmp_path / "m"))
        assert isinstance(again.method_, Recorded)
        _same_predictions(first, again.predict(reviews_small.head(20)))
    finally:
        from fineclass.methods import base

        base._METHODS.pop("head-recorded", None)
    with pytest.raises(FineclassError) as e:
        fineclass.train(reviews_small, model=tiny_bert, method="head-recorded", progress=False)
    assert e.value.argument == "method" and "generative" in str(e.value)

    class Incomplete(Method):
        def build(self, *a, **k):
            return None

    with pytest.raises(TypeError):
        Incomplete()  # the interface is declared: a method that lacks part of it cannot be made
