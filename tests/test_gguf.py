"""GGUF export and the llama.cpp engine (issue 17): scoring equal to torch's, sidecars, errors, fidelity, CLI.

The fast tests use a tiny random Llama that carries SmolLM2's tokenizer (llama.cpp's converter must recognise
the tokenizer), exported to f32 so that llama.cpp's probabilities can be compared with torch's to 1e-4: any
mistake in the candidate tree's sequences, positions or logits rows shows there. The slow test scores the
packaged SmolLM2 GGUF file zero-shot against the torch path.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh --with-gguf)")

import fineclass
from fineclass import FineclassError
from fineclass.llamacpp.tools import converter_dir

try:
    converter_dir()
except FineclassError as e:  # the converter comes from llama-cpp-python's source package, at setup
    pytest.skip(str(e), allow_module_level=True)

TEXTS = [
    "a gripping, beautifully made film",
    "dull and overlong",
    "I loved every minute of it",
    "the worst film of the year",
    "",
    "fine, if forgettable",
    "a quiet triumph of acting",
    "painfully unfunny from start to finish",
]


def _tiny_smol(folder: Path, vocab_from: str, hidden: int = 64, arch: str = "llama") -> str:
    """A random 2-layer decoder with SmolLM2's tokenizer and chat template (weights large enough to give
    probabilities far from uniform, so that differences show)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

    tok = AutoTokenizer.from_pretrained(vocab_from)
    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            tie_word_embeddings=True,
            initializer_range=0.2,
        )
        LlamaForCausalLM(cfg).save_pretrained(str(folder))
    else:
        cfg = OPTConfig(
            vocab_size=len(tok),
            hidden_size=16,
            ffn_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=1024,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        OPTForCausalLM(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def smol_folder():
    from fineclass.models import resolve

    return resolve("smollm2-135m")


@pytest.fixture(scope="module")
def tiny_smol(tmp_path_factory, smol_folder) -> str:
    return _tiny_smol(tmp_path_factory.mktemp("tiny-smol"), smol_folder)


@pytest.fixture(scope="module")
def reviews(reviews_small):
    data = reviews_small.with_columns(
        pl.when(pl.col("label") == 1).then(pl.lit("pos")).otherwise(pl.lit("neg")).alias("label")
    )
    return data.select(["id", "text", "label"])


@pytest.fixture(scope="module")
def tuned(tiny_smol, reviews):
    """A generative classifier fine-tuned (a few LoRA steps) from the tiny model, with a validation split."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fineclass.train(
            reviews.gather_every(5),
            model=tiny_smol,
            method="generative",
            progress=False,
            codebook={"neg": "the reviewer dislikes the film", "pos": "the reviewer likes it"},
            config={
                "epochs": 1,
                "max_length": 48,
                "batch_size": 8,
                "lora_r": 4,
                "validation": 0.25,
                "device": "cpu",
                "seed": 0,
            },
        )


@pytest.fixture(scope="module")
def exported(tuned, tmp_path_factory) -> Path:
    """The fine-tuned model exported to f32 and q8_0, with the fidelity check on its validation split."""
    out = tmp_path_factory.mktemp("export") / "deploy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fineclass.export(tuned, out, format="gguf", quant=["f32", "q8_0"], bootstrap=200)
    return out


def _probs(table: pa.Table) -> np.ndarray:
    return np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c.startswith("p_")]
    )


# ---------------------------------------------------------------------- the export
def test_export_writes_files_sidecars_tokenizer_and_fidelity(exported, tuned):
    names = sorted(p.name for p in exported.iterdir())
    assert names == [
        "fidelity.json",
        "model-f32.gguf",
        "model-f32.json",
        "model-q8_0.gguf",
        "model-q8_0.json",
        "tokenizer",
    ]
    side = json.loads((exported / "model-q8_0.json").read_text())
    assert side["quant"] == "q8_0" and side["bytes"] == (exported / "model-q8_0.gguf").stat().st_size
    assert side["spec"] == tuned.spec_.to_dict()
    assert side["generative"]["template"] == tuned.method_.plan.template
    assert side["tokens"]["head"] == list(tuned.method_.plan.head_ids)
    assert side["source"]["model_hash"] == tuned.manifest_["model_hash"]
    assert (exported / "model-q8_0.gguf").stat().st_size < (exported / "model-f32.gguf").stat().st_size
    report = json.loads((exported / "fidelity.json").read_text())
    # the validation split kept by train(): 25% of 48 documents
    assert [r["file"] for r in report["summary"]] == ["model-f32.gguf", "model-q8_0.gguf"]
    assert all(r["n"] == tuned.validation_.num_rows == 12 for r in report["summary"])
    assert report["metric"] == "accuracy"
    assert not any(p.name.startswith(".") for p in exported.parent.iterdir())  # no temporary folder left


def test_gguf_scores_as_torch_does(exported, tuned):
    """f32 GGUF: the same probabilities as the torch model (to 1e-4), the same table, across several batches."""
    data = pa.table({"text": TEXTS})
    ref = tuned.predict(data)
    gguf = fineclass.load(exported / "model-f32.gguf")
    assert gguf.engine_ == "llamacpp" and gguf.spec_.to_dict() == tuned.spec_.to_dict()
    got = gguf.predict(data)
    assert got.schema == ref.schema
    assert got.column("status").to_pylist() == ref.column("status").to_pylist()
    ok = np.array([s == "ok" for s in ref.column("status").to_pylist()])
    np.testing.assert_allclose(_probs(got)[ok], _probs(ref)[ok], atol=2e-5)
    assert got.column("label").to_pylist() == ref.column("label").to_pylist()
    gguf.method_.decode_tokens = 64  # a few documents per llama.cpp batch: many batches
    np.testing.assert_allclose(_probs(gguf.predict(data))[ok], _probs(got)[ok], atol=1e-6)


def test_label_sets_of_every_shape_score_as_torch(tiny_smol, tmp_path):
    """Multi-label and dimension->level trees (one group per class) and a single-label set with more candidates
    than llama.cpp has sequences (300 > 255: scored in chunks) give torch's probabilities."""
    from fineclass.zeroshot import zero_shot_classifier

    cases = [
        dict(labels=["art", "music", "sport"], kind="multi"),
        dict(labels=["joy", "calm"], kind="dimlevel", levels=["low", "high"]),
        dict(labels=list(range(300)), kind="single", max_length=16),
    ]
    data = pa.table({"text": TEXTS[:4]})
    for k, case in enumerate(cases):
        clf = zero_shot_classifier(tiny_smol, device="cpu", **case)
        ref = clf.predict(data)
        out = fineclass.export(clf, tmp_path / f"e{k}", format="gguf", quant="f32", data=None)
        got = fineclass.load(out).predict(data)
        np.testing.assert_allclose(_probs(got), _probs(ref), atol=2e-5, err_msg=str(case))


def test_generate_gives_torch_answers(exported, tuned):
    data = pa.table({"text": TEXTS})
    ref = fineclass.generate(tuned, data, max_new_tokens=6, warn=False)
    got = fineclass.generate(fineclass.load(exported / "model-f32.gguf"), data, max_new_tokens=6, warn=False)
    assert got.schema == ref.schema
    assert got.column("answer").to_pylist() == ref.column("answer").to_pylist()
    assert got.column("status").to_pylist() == ref.column("status").to_pylist()


def test_classify_engine_llamacpp_writes_resumable_shards(exported, tmp_path):
    data = pa.table({"id": list(range(8)), "text": TEXTS})
    out = tmp_path / "out"
    first = fineclass.classify(
        data, model=str(exported / "model-q8_0.gguf"), output=out, engine="llamacpp", shard_rows=3, progress=False
    )
    assert first["shards_written"] == 3 and first["complete"]
    direct = fineclass.load(exported / "model-q8_0.gguf").predict(data)
    table = fineclass.read_output(out)
    assert table.column("label").to_pylist() == direct.column("label").to_pylist()
    again = fineclass.classify(
        data, model=str(exported / "model-q8_0.gguf"), output=out, engine="llamacpp", shard_rows=3, progress=False
    )
    assert again["shards_written"] == 0 and again["shards_skipped"] == 3
    with pytest.raises(FineclassError, match="holds shards of another run"):  # another file is another model
        fineclass.classify(data, model=str(exported / "model-f32.gguf"), output=out, shard_rows=3, progress=False)
    # the same file loaded in memory resumes the run; a copy with one byte changed (same task, same sidecar) is
    # another model: the run's identity holds the file's digest
    loaded = fineclass.load(exported / "model-q8_0.gguf")
    assert fineclass.classify(data, model=loaded, output=out, shard_rows=3, progress=False)["shards_skipped"] == 3
    edited = tmp_path / "edited"
    shutil.copytree(exported, edited)
    raw = bytearray((edited / "model-q8_0.gguf").read_bytes())
    raw[-1] ^= 1
    (edited / "model-q8_0.gguf").write_bytes(bytes(raw))
    with pytest.raises(FineclassError, match="holds shards of another run"):
        fineclass.classify(data, model=str(edited / "model-q8_0.gguf"), output=out, shard_rows=3, progress=False)


# ---------------------------------------------------------------------- bad input
def test_unknown_quantization_is_refused_before_any_work(tuned, tmp_path):
    with pytest.raises(FineclassError, match="q4_k_m is the paper's") as e:
        fineclass.export(tuned, tmp_path / "x", format="gguf", quant="q4_k_x")
    assert e.value.argument == "quant"
    with pytest.raises(FineclassError) as e:
        fineclass.export(tuned, tmp_path / "x", format="gguf", quant=4)
    assert e.value.argument == "quant"
    with pytest.raises(FineclassError) as e:
        fineclass.export(tuned, tmp_path / "x", format="onnx")
    assert e.value.argument == "format"
    assert not (tmp_path / "x").exists()


def test_gguf_without_its_sidecar_is_refused(exported, tmp_path):
    lone = tmp_path / "model-q8_0.gguf"
    shutil.copy(exported / "model-q8_0.gguf", lone)
    with pytest.raises(FineclassError, match="sidecar model-q8_0.json .* is missing") as e:
        fineclass.load(lone)
    assert e.value.argument == "path"


def test_bare_gguf_points_to_zero_shot():
    from fineclass.llamacpp.classifier import gguf_file

    with pytest.raises(FineclassError, match="zero_shot_classifier") as e:
        fineclass.load(gguf_file("smollm2-135m"))
    assert e.value.argument == "path"


def test_sidecar_of_another_task_or_edited_labels_is_refused(exported, tiny_smol, tmp_path):
    from fineclass.zeroshot import zero_shot_classifier

    other = fineclass.export(
        zero_shot_classifier(tiny_smol, labels=["a", "b"], device="cpu"),
        tmp_path / "other",
        format="gguf",
        quant="q8_0",
        data=None,
    )
    mixed = tmp_path / "mixed"
    shutil.copytree(exported, mixed)
    shutil.copy(Path(other) / "model-q8_0.json", mixed / "model-q8_0.json")
    with pytest.raises(FineclassError, match="do not match model-q8_0.gguf") as e:
        fineclass.load(mixed / "model-q8_0.gguf")
    assert e.value.argument == "path"
    edited = tmp_path / "edited"
    shutil.copytree(exported, edited)
    side = json.loads((edited / "model-q8_0.json").read_text())
    side["spec"]["classes"] = ["pos", "neg"]  # the labels swapped by hand
    (edited / "model-q8_0.json").write_text(json.dumps(side))
    with pytest.raises(FineclassError, match="do not match"):
        fineclass.load(edited / "model-q8_0.gguf")


def test_a_different_tokenizer_is_refused(exported, tiny_llama, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(exported, moved)
    shutil.rmtree(moved / "tokenizer")
    shutil.copytree(tiny_llama, moved / "tokenizer")  # another model's tokenizer files
    with pytest.raises(FineclassError, match="other tokens than at export") as e:
        fineclass.load(moved / "model-q8_0.gguf")
    assert e.value.argument == "path"


def test_architecture_the_converter_cannot_convert(tmp_path, smol_folder):
    from fineclass.zeroshot import zero_shot_classifier

    opt = _tiny_smol(tmp_path / "opt", smol_folder, arch="opt")
    clf = zero_shot_classifier(opt, labels=["neg", "pos"], device="cpu")
    with pytest.raises(FineclassError, match="OPTForCausalLM") as e:
        fineclass.export(clf, tmp_path / "x", format="gguf", quant="q8_0", data=None)
    assert e.value.argument == "classifier" and "format='safetensors'" in str(e.value)  # refused before merging
    assert list(tmp_path.iterdir()) == [tmp_path / "opt"]


def test_unknown_tokenizer_fails_cleanly_and_leaves_no_half_export(tiny_llama, tmp_path):
    """The tiny test Llama's own BPE tokenizer is not in the converter's list: a clear error, and neither the
    output folder nor its temporary folder is left behind."""
    from fineclass.zeroshot import zero_shot_classifier

    clf = zero_shot_classifier(tiny_llama, labels=["neg", "pos"], device="cpu")
    with pytest.raises(FineclassError, match="does not know this model's tokenizer") as e:
        fineclass.export(clf, tmp_path / "out" / "deploy", format="gguf", quant="q8_0", data=None)
    assert e.value.argument == "classifier"
    assert list((tmp_path / "out").iterdir()) == []


def test_export_does_not_overwrite_other_folders(tuned, exported, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FineclassError, match="overwrite=True") as e:
        fineclass.export(tuned, busy, format="gguf", quant="q8_0", data=None)
    assert e.value.argument == "path"
    with pytest.raises(FineclassError, match="not a GGUF export"):
        fineclass.export(tuned, busy, format="gguf", quant="q8_0", data=None, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"


def test_engine_llamacpp_needs_a_gguf(tuned):
    with pytest.raises(FineclassError, match="runs a GGUF file") as e:
        fineclass.classify(pa.table({"text": TEXTS}), model=tuned, engine="llamacpp")
    assert e.value.argument == "model"


# ---------------------------------------------------------------------- fidelity
def test_fidelity_reports_agreement_metric_and_flips(exported, tuned, tiny_smol, tmp_path, reviews):
    """Against itself (f32) nothing flips; against a zero-shot export with another prompt, every flipped
    document is listed with both labels and confidences, and a metric drop beyond its interval warns."""
    from fineclass.zeroshot import zero_shot_classifier

    held = reviews.gather_every(4, offset=2)
    ref = tuned.predict(held)
    # human codes that the reference matches exactly, so the other model's flips are errors
    coded = held.with_columns(pl.Series("label", ref.column("label").to_pylist()))
    report = fineclass.fidelity(tuned, exported / "model-f32.gguf", coded, bootstrap=200)
    row = report.summary.to_pylist()[0]
    assert row["agreement"] == 1.0 and row["flipped"] == 0 and row["difference"] == 0.0
    assert report.flips.num_rows == 0
    zs = zero_shot_classifier(
        tiny_smol, labels=["neg", "pos"], device="cpu", prompt="Is this review positive or negative?\n{text}"
    )
    other = fineclass.export(zs, tmp_path / "zs", format="gguf", quant="q8_0", data=None)
    with pytest.warns(UserWarning, match="lowers accuracy"):
        report = fineclass.fidelity(tuned, other, coded, bootstrap=200)
    row = report.summary.to_pylist()[0]
    theirs = fineclass.load(other).predict(held)
    differ = [
        i for i, (a, b) in enumerate(zip(ref.column("label").to_pylist(), theirs.column("label").to_pylist())) if a != b
    ]
    assert row["flipped"] == len(differ) == report.flips.num_rows > 0
    assert row["exported"] == pytest.approx(1 - len(differ) / held.height) and row["upper"] < 0
    flip = report.flips.to_pylist()[0]
    i = differ[0]
    assert flip["id"] == held["id"][i] and flip["label_reference"] == ref.column("label")[i].as_py()
    assert flip["confidence_exported"] == pytest.approx(theirs.column("confidence")[i].as_py())
    assert "agreement" in repr(report)


# ---------------------------------------------------------------------- zero-shot on a bare GGUF
@pytest.fixture(scope="module")
def bare_gguf(tiny_smol, tmp_path_factory) -> Path:
    """The tiny model converted by llama.cpp's converter alone: no sidecar, no task hash."""
    from fineclass.llamacpp.export import convert

    out = tmp_path_factory.mktemp("bare") / "tiny.gguf"
    convert(Path(tiny_smol), out, "f32", 1)
    return out


def test_bare_gguf_zero_shot_reads_its_own_tokenizer(bare_gguf, tiny_smol):
    """A bare GGUF with a codebook: its tokenizer and chat template come from the file and give the same
    prompt tokens and probabilities as the torch zero-shot path on the original folder."""
    from fineclass.zeroshot import zero_shot_classifier

    book = {"neg": "the reviewer dislikes the film", "pos": "the reviewer likes it"}
    ref_clf = zero_shot_classifier(tiny_smol, codebook=book, device="cpu")
    clf = zero_shot_classifier(str(bare_gguf), codebook=book)
    assert clf.engine_ == "llamacpp"
    assert clf.method_.plan.head_ids == ref_clf.method_.plan.head_ids
    data = pa.table({"text": TEXTS})
    np.testing.assert_allclose(
        _probs(clf.predict(data))[[0, 1, 2, 3, 5]], _probs(ref_clf.predict(data))[[0, 1, 2, 3, 5]], atol=2e-5
    )
    with pytest.raises(FineclassError, match="engine"):
        zero_shot_classifier(str(bare_gguf), codebook=book, engine="onnx")


@pytest.mark.slow
def test_packaged_smollm2_gguf_zero_shot_agrees_with_torch(reviews):
    """The packaged SmolLM2 GGUF (Q4_1) run by llama.cpp against the torch path on its dequantized weights."""
    from fineclass.zeroshot import zero_shot_classifier

    book = {"neg": "the reviewer dislikes the film or finds it poor", "pos": "the reviewer likes or recommends it"}
    data = reviews.head(12)
    ref = zero_shot_classifier("smollm2-135m", codebook=book, device="cpu").predict(data)
    got = zero_shot_classifier("smollm2-135m", codebook=book, engine="llamacpp").predict(data)
    # the weights are the same Q4_1 numbers in both; llama.cpp also rounds the activations of each matrix product to
    # 8 bits (q8_1), torch does not. That moves a probability by up to about 0.06 here (bench/gguf_q8_flips.py
    # measures the same rounding on q8_0); an exact match of the two engines is tested on f32 files above.
    assert np.abs(_probs(got) - _probs(ref)).max() < 0.1
    assert np.mean(np.array(got.column("label").to_pylist()) == np.array(ref.column("label").to_pylist())) >= 10 / 12


# ---------------------------------------------------------------------- command line
def test_cli_export_and_fidelity(tuned, tmp_path, reviews, capsys):
    from fineclass.cli import main

    saved = tuned.save(tmp_path / "model")
    held = tmp_path / "held.parquet"
    reviews.gather_every(12, offset=1).write_parquet(held)
    assert (
        main(["export", saved, str(tmp_path / "deploy"), "--format", "gguf", "--quant", "q8_0", "--data", str(held)])
        == 0
    )
    assert (tmp_path / "deploy" / "model-q8_0.gguf").exists()
    assert json.loads((tmp_path / "deploy" / "fidelity.json").read_text())["summary"][0]["n"] == 20
    assert (
        main(
            [
                "fidelity",
                saved,
                "--against",
                str(tmp_path / "deploy"),
                "--data",
                str(held),
                "-o",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"][0]["file"] == "model-q8_0.gguf" and report["metric"] == "accuracy"
    assert main(["export", saved, str(tmp_path / "bad"), "--format", "gguf", "--quant", "q9"]) == 2
    assert "quant" in capsys.readouterr().err


def test_converter_runs_with_the_library_path_an_r_session_sets(tuned, tmp_path, monkeypatch):
    """From R (reticulate), LD_LIBRARY_PATH starts with R's library folders and, on Debian, the system's, where
    a system libpython of the same version can shadow this Python's own: the converter's Python then fails to
    import ssl. The export must work with that environment."""
    import subprocess
    import sys
    import sysconfig

    from fineclass.llamacpp.tools import python_child_env

    r_paths = f"/usr/lib/R/lib:/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}"
    env = {"LD_LIBRARY_PATH": f"{r_paths}:/opt/mine", "X": "1"}
    assert python_child_env(env, libdir="/py/lib") == {"LD_LIBRARY_PATH": f"/py/lib:{r_paths}:/opt/mine", "X": "1"}
    assert python_child_env({"X": "1"}, libdir="/py/lib") == {"X": "1"}  # nothing to shadow it
    monkeypatch.setenv("LD_LIBRARY_PATH", r_paths)
    child = subprocess.run([sys.executable, "-c", "import ssl"], env=python_child_env(), capture_output=True)
    assert child.returncode == 0, child.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fineclass.export(tuned, tmp_path / "deploy", format="gguf", quant="f16", data=None)
    assert (Path(out) / "model-f16.gguf").exists()
