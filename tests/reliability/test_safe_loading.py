"""Safe loading: models are saved as safetensors + JSON; pickle is never unpickled unless the user opts in; a model
folder's own Python code never runs unless trust_remote_code=True; names read from ledgers, checkpoint pointers and
model manifests cannot reach outside their folder.

Elsewhere: tests/test_train.py (a pickle file in a saved model is refused), tests/test_crowd.py (review-sheet names
cannot escape their folder), tests/test_serve.py (the server binds to loopback and enforces its key),
tests/test_generative.py (instructions inside a text cannot produce a label outside the label set).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import fineclass
from fineclass import FineclassError
from fineclass.infer import LEDGER, read_output

from ._helpers import run_python

pytestmark = pytest.mark.reliability

PICKLE_MAGIC = b"\x80"  # pickle protocol 2+
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (pickle inside)
SMALL = {
    "text": ["a good film", "a bad film", "good acting", "bad acting", "great", "awful"],
    "label": [1, 0, 1, 0, 1, 0],
}


@pytest.fixture(scope="module")
def lora_classifier(tiny_bert):
    return fineclass.train(
        SMALL, model=tiny_bert, config={"epochs": 1, "validation": 0, "finetune": "lora", "lora_r": 2}, progress=False
    )


@pytest.mark.parametrize("which", ["full", "lora"])
def test_saved_models_are_safetensors_and_json(tiny_classifier, lora_classifier, tmp_path, which):
    from safetensors import safe_open

    clf = tiny_classifier if which == "full" else lora_classifier
    folder = Path(clf.save(tmp_path / "m"))
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and (folder / "fineclass.json").exists()
    for p in files:
        head = p.read_bytes()[:4]
        assert not head.startswith(PICKLE_MAGIC) and head != ZIP_MAGIC, f"{p.name} looks like a pickle"
        if p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                assert list(f.keys())
        elif p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        else:
            assert p.suffix in (".txt", ".jinja", ".md"), f"unexpected file {p.relative_to(folder)}"
            p.read_text(encoding="utf-8")  # plain text (vocabularies, chat templates, model cards)


def _booby_trapped_pickle(path: Path, marker: Path) -> None:
    """A real pickle that creates ``marker`` the moment it is unpickled."""
    import torch

    class Trap:
        def __reduce__(self):
            return open, (str(marker), "w")

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": Trap()}, str(path))


@pytest.mark.parametrize(
    "name",
    [
        "model/pytorch_model.bin",
        "model/training_args.bin",
        "extra/weights.pt",
        "model/optimizer.pth",
        "state.pkl",
        "model/last.ckpt",
    ],
)
def test_pickle_in_a_saved_model_is_refused_and_never_unpickled(tiny_classifier, tmp_path, name):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    marker = tmp_path / "UNPICKLED"
    _booby_trapped_pickle(folder / name, marker)
    with pytest.raises(FineclassError, match="pickle") as e:
        fineclass.load(folder)
    assert e.value.argument == "path" and Path(name).name in str(e.value)
    assert not marker.exists()
    if Path(name).suffix in (".bin", ".pt", ".pth"):  # a weight file added after saving: the weights' hash differs
        with pytest.raises(FineclassError, match="hash save\\(\\) recorded"):
            fineclass.load(folder, allow_pickle=True)
    else:
        fineclass.load(folder, allow_pickle=True)  # the user's opt-in: loads (the weights are still safetensors)
    assert not marker.exists()


def test_pickle_in_a_base_model_is_refused(tiny_bert, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    marker = tmp_path / "UNPICKLED"
    _booby_trapped_pickle(base / "pytorch_model.bin", marker)
    with pytest.raises(FineclassError, match="pickle") as e:
        fineclass.train(SMALL, model=str(base), config={"epochs": 1, "validation": 0}, progress=False)
    assert e.value.argument == "model" and not marker.exists()
    fineclass.train(
        SMALL, model=str(base), config={"epochs": 1, "validation": 0, "extra": {"allow_pickle": True}}, progress=False
    )
    assert not marker.exists()  # safetensors are still preferred when both are there


def test_weights_that_are_pickle_in_disguise_are_not_unpickled(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    marker = tmp_path / "UNPICKLED"
    _booby_trapped_pickle(folder / "model" / "model.safetensors", marker)  # a pickle under a safetensors name
    with pytest.raises(FineclassError) as e:
        fineclass.load(folder, allow_pickle=True)
    assert e.value.argument == "path" and not marker.exists()


# ---------------------------------------------------------------------- remote code
def _remote_code_folder(
    source: str, folder: Path, marker: Path, model_type: str = "bert", tokenizer: bool = False
) -> Path:
    """A model folder whose config asks transformers to import its own evil.py, which writes ``marker``."""
    shutil.copytree(source, folder)
    (folder / "evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast\n"
        f"class EvilConfig(BertConfig):\n    model_type = {model_type!r}\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type=model_type,
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer:
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        tc.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil.EvilTokenizer"]})
        (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    return folder


@pytest.mark.parametrize("model_type,tokenizer", [("bert", False), ("bert", True), ("evilbert", False)])
def test_remote_code_in_a_base_model_never_runs_by_default(tiny_bert, tmp_path, model_type, tokenizer):
    marker = tmp_path / "REMOTE_CODE_RAN"
    folder = _remote_code_folder(tiny_bert, tmp_path / "evil", marker, model_type, tokenizer)
    try:  # transformers either ignores auto_map (a known model type) or refuses; both are fine
        clf = fineclass.train(SMALL, model=str(folder), config={"epochs": 1, "validation": 0}, progress=False)
        assert type(clf.module_).__module__.startswith("transformers.models.")
    except FineclassError as e:
        assert e.argument == "model"
    assert not marker.exists(), "the model folder's own code was executed"


def test_remote_code_in_a_saved_model_never_runs_by_default(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    marker = tmp_path / "REMOTE_CODE_RAN"
    shutil.rmtree(folder / "model")
    _remote_code_folder(str(Path(tiny_classifier.save(tmp_path / "clean")) / "model"), folder / "model", marker)
    try:
        fineclass.load(folder)
    except FineclassError as e:
        assert e.argument == "path"
    assert not marker.exists(), "the saved model's own code was executed"


def test_the_remote_code_trap_works_when_trusted(tiny_bert, tmp_path):
    """The control: with trust_remote_code=True the same folder does run its code (so the tests above can fail)."""
    marker = tmp_path / "REMOTE_CODE_RAN"
    folder = _remote_code_folder(tiny_bert, tmp_path / "evil", marker)
    r = run_python(
        f"""
        import fineclass
        fineclass.train({SMALL!r}, model={str(folder)!r}, config={{"epochs": 1, "validation": 0}},
                        trust_remote_code=True, progress=False)
        """,
        env={"HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert marker.read_text() == "remote code ran"


# ---------------------------------------------------------------------- names that could escape
@pytest.fixture(scope="module")
def finished_output(tiny_classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "out"
    data = {"id": list(range(12)), "text": [f"review number {i}" for i in range(12)]}
    fineclass.classify(data, model=tiny_classifier, output=out, shard_rows=5, progress=False)
    return data, out


@pytest.mark.parametrize(
    "name", ["../../x.parquet", "/etc/passwd", "part-000000.parquet/../../x.parquet", "..", "sub/part-000001.parquet"]
)
def test_a_ledger_cannot_name_a_file_outside_its_folder(finished_output, tiny_classifier, tmp_path, name):
    data, source = finished_output
    out = tmp_path / "a" / "b" / "out"
    shutil.copytree(source, out)
    (tmp_path / "x.parquet").write_bytes((out / "part-000000.parquet").read_bytes())  # a real shard, outside
    with open(out / LEDGER, "a") as f:
        f.write(json.dumps({"shard": 0, "file": name, "rows": 5, "truncated": 0}) + "\n")
    with pytest.raises(FineclassError, match="outside") as e:
        read_output(out)
    assert e.value.argument == "output"
    with pytest.raises(FineclassError, match="outside") as e:
        fineclass.classify(data, model=tiny_classifier, output=out, shard_rows=5, progress=False)
    assert e.value.argument == "output"


@pytest.mark.parametrize("name", [7, None])
def test_a_ledger_line_whose_file_is_not_text_is_named(finished_output, tiny_classifier, tmp_path, name):
    data, source = finished_output
    out = tmp_path / "out"
    shutil.copytree(source, out)
    with open(out / LEDGER, "a") as f:
        f.write(json.dumps({"shard": 0, "file": name, "rows": 5, "truncated": 0}) + "\n")
    with pytest.raises(FineclassError) as e:
        read_output(out)
    assert e.value.argument == "output"


@pytest.fixture(scope="module")
def checkpoint(tiny_bert, tmp_path_factory):
    ck = tmp_path_factory.mktemp("ck") / "ck"
    config = {"epochs": 2, "validation": 0, "early_stopping": None, "checkpoint_dir": str(ck)}
    fineclass.train(SMALL, model=tiny_bert, config=config, progress=False)
    return ck, config


@pytest.mark.parametrize("name", ["../x", "../ck-copy/epoch-1", "/tmp", "..", ".", "", 7, None])
def test_a_checkpoint_pointer_cannot_name_a_folder_outside(checkpoint, tiny_bert, tmp_path, name):
    source, config = checkpoint
    ck = tmp_path / "ck"
    shutil.copytree(source, ck)
    shutil.copytree(ck / "epoch-1", tmp_path / "x")  # a complete, valid checkpoint, outside the folder
    shutil.copytree(ck, tmp_path / "ck-copy")
    (ck / "latest.json").write_text(json.dumps({"epoch": 1, "folder": name}))
    with pytest.raises(FineclassError) as e:
        fineclass.train(
            SMALL,
            model=tiny_bert,
            config={**config, "epochs": 3, "checkpoint_dir": str(ck)},
            resume=True,
            progress=False,
        )
    assert e.value.argument == "checkpoint_dir" and "latest.json" in str(e.value)


@pytest.mark.parametrize("weights", ["../model", "/tmp", "model/../../m2/model", ".", None])
def test_a_manifest_cannot_name_weights_outside_its_folder(tiny_classifier, tmp_path, weights):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    tiny_classifier.save(tmp_path / "m2")
    manifest = json.loads((folder / "fineclass.json").read_text())
    manifest["weights"] = weights
    (folder / "fineclass.json").write_text(json.dumps(manifest))
    with pytest.raises(FineclassError) as e:
        fineclass.load(folder)
    assert e.value.argument == "path"


@pytest.mark.parametrize("damage", ["fineclass.json", "labels.json", "model/tokenizer.json", "model/config.json"])
def test_a_damaged_model_folder_is_named(tiny_classifier, tmp_path, damage):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    (folder / damage).write_text("{not json")
    with pytest.raises(FineclassError) as e:
        fineclass.load(folder)
    assert e.value.argument == "path" and str(folder) in str(e.value)
