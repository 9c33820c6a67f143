"""Issue 21, items 2, 3 and 12: a saved model folder is used only when it is what save() wrote.

- 2: ``load()`` refuses weights that lack a tensor the model needs (they would start random) or that differ from
  the SHA-256 ``save()`` recorded; a model saved without the hash loads with a warning.
- 3: a LoRA adapter's base is the folder it was trained on (absolute path), never a folder of the same relative
  name in the working directory; a hub base that is not the pinned one needs ``trust_hub=True``.
- 12: loading reads regular files inside the folder only (no FIFO, no link out of the folder, no oversized
  labels.json); files and folders fineclass writes follow the user's umask.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import fineclass
from fineclass import FineclassError
from fineclass.manifest import weights_digest

pytestmark = pytest.mark.reliability

SMALL = {
    "text": ["a good film", "a bad film", "good acting", "bad acting", "great", "awful", "fine work", "dull plot"],
    "label": [1, 0, 1, 0, 1, 0, 1, 0],
}
DOCS = {"id": [1, 2, 3], "text": ["a good film", "bad acting all along", "dull plot"]}


def _drop_tensors(weights: Path, prefix_part: str) -> list[str]:
    """Rewrite a safetensors file without the tensors whose name contains ``prefix_part``; returns their names."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    dropped = [k for k in tensors if prefix_part in k]
    assert dropped, f"no tensor named *{prefix_part}* in {weights.name}: {sorted(tensors)[:8]}"
    save_file({k: v for k, v in tensors.items() if k not in dropped}, str(weights), metadata={"format": "pt"})
    return dropped


def _rehash(folder: Path) -> None:
    """What a careful forger does: record the new weights' hash in the manifest."""
    manifest = json.loads((folder / "fineclass.json").read_text())
    manifest["weights_sha256"] = weights_digest(folder)
    (folder / "fineclass.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def lora_model(tiny_bert, tmp_path_factory):
    clf = fineclass.train(
        SMALL, model=tiny_bert, config={"epochs": 1, "validation": 0, "finetune": "lora", "lora_r": 2}, progress=False
    )
    return clf, Path(clf.save(tmp_path_factory.mktemp("lora") / "m"))


# ---------------------------------------------------------------------- item 2
def test_weights_without_the_classifier_head_are_refused(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    _drop_tensors(folder / "model" / "model.safetensors", "classifier")
    with pytest.raises(FineclassError, match="do not match the hash") as e:
        fineclass.load(folder)
    assert e.value.argument == "path" and "save the model again" in str(e.value)


def test_missing_tensors_are_refused_even_when_the_hash_was_forged(tiny_classifier, lora_model, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "full"))
    dropped = _drop_tensors(folder / "model" / "model.safetensors", "classifier")
    _rehash(folder)
    with pytest.raises(FineclassError, match="lack") as e:
        fineclass.load(folder)
    assert dropped[0] in str(e.value) or "classifier" in str(e.value)

    lora = tmp_path / "lora"
    shutil.copytree(lora_model[1], lora)
    _drop_tensors(lora / "adapter" / "adapter_model.safetensors", "classifier")  # the head peft saves beside LoRA
    _rehash(lora)
    with pytest.raises(FineclassError, match="lack .*classifier"):
        fineclass.load(lora)


def test_a_model_saved_without_the_hash_loads_with_a_warning(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    manifest = json.loads((folder / "fineclass.json").read_text())
    assert manifest["weights_sha256"] == weights_digest(folder)
    del manifest["weights_sha256"]
    (folder / "fineclass.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="without a hash of its weights"):
        clf = fineclass.load(folder)
    np.testing.assert_allclose(
        clf.predict_proba(DOCS).drop_columns(["id"]).to_pandas().to_numpy(),
        tiny_classifier.predict_proba(DOCS).drop_columns(["id"]).to_pandas().to_numpy(),
        atol=1e-6,
    )


# ---------------------------------------------------------------------- item 3
def _perturbed_copy(src: str, dst: Path) -> None:
    """A folder of the same architecture and tokenizer whose weights differ."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = load_file(str(weights))
    g = torch.Generator().manual_seed(1)
    save_file(
        {k: v + 0.5 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in tensors.items()},
        str(weights),
        metadata={"format": "pt"},
    )


def test_a_relative_lora_base_is_not_resolved_from_another_working_directory(tiny_bert, tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    shutil.copytree(tiny_bert, home / "models" / "tinybert")
    _perturbed_copy(tiny_bert, elsewhere / "models" / "tinybert")  # same relative name, other weights
    monkeypatch.chdir(home)
    clf = fineclass.train(
        SMALL,
        model="models/tinybert",
        config={"epochs": 1, "validation": 0, "finetune": "lora", "lora_r": 2},
        progress=False,
    )
    folder = Path(clf.save(tmp_path / "saved"))
    expected = clf.predict_proba(DOCS).drop_columns(["id"]).to_pandas().to_numpy()

    monkeypatch.chdir(elsewhere)
    again = fineclass.load(folder)
    got = again.predict_proba(DOCS).drop_columns(["id"]).to_pandas().to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)  # the base it was trained on, not the one here
    assert Path(json.loads((folder / "fineclass.json").read_text())["model_resolved"]).is_absolute()

    shutil.rmtree(home / "models")  # the recorded base is gone: an error, not the folder of the same name here
    with pytest.raises(FineclassError, match="no longer exists") as e:
        fineclass.load(folder)
    assert e.value.argument == "base_model"


def test_a_hub_base_that_is_not_the_pinned_one_needs_consent(lora_model, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(lora_model[1], folder)
    manifest = json.loads((folder / "fineclass.json").read_text())
    manifest.update({"model": "someone/any-model", "model_resolved": "someone/any-model", "model_hash": None})
    manifest.pop("base_revision", None)
    (folder / "fineclass.json").write_text(json.dumps(manifest))
    with pytest.raises(FineclassError, match="trust_hub=True") as e:
        fineclass.load(folder)
    assert e.value.argument == "trust_hub"
    with pytest.raises(FineclassError, match="trust_hub=True") as e:
        fineclass.load(lora_model[1], base_model="someone/other-model")
    assert e.value.argument == "trust_hub"


# ---------------------------------------------------------------------- item 12
def test_a_fifo_labels_json_is_refused_not_waited_on(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    (folder / "labels.json").unlink()
    os.mkfifo(folder / "labels.json")
    outcome = {}

    def attempt():
        try:
            fineclass.load(folder)
            outcome["result"] = "loaded"
        except FineclassError as e:
            outcome["result"] = str(e)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # release the reader that waits for a writer, then fail
        fd = os.open(folder / "labels.json", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("load() waited on a FIFO labels.json")
    assert "labels.json" in outcome["result"] and "not a regular file" in outcome["result"]


@pytest.mark.parametrize("target", ["/dev/zero", "outside"])
def test_links_out_of_the_folder_are_refused(tiny_classifier, tmp_path, target):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    if target == "outside":
        target = tmp_path / "labels-elsewhere.json"
        shutil.copy(folder / "labels.json", target)
    (folder / "labels.json").unlink()
    (folder / "labels.json").symlink_to(target)
    with pytest.raises(FineclassError, match="symbolic link .*outside") as e:
        fineclass.load(folder)
    assert e.value.argument == "path"


def test_an_oversized_labels_json_is_refused(tiny_classifier, tmp_path):
    folder = Path(tiny_classifier.save(tmp_path / "m"))
    labels = json.loads((folder / "labels.json").read_text())
    (folder / "labels.json").write_text(json.dumps(labels) + " " * (17 * 1024 * 1024))  # valid JSON, 17 MB
    with pytest.raises(FineclassError, match="bytes"):
        fineclass.load(folder)


def _modes(folder: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_and_folders_follow_the_umask(tiny_classifier, tmp_path, umask):
    old = os.umask(umask)
    try:
        folder = Path(tiny_classifier.save(tmp_path / "m"))
    finally:
        os.umask(old)
    assert _modes(folder) == {("d", 0o777 & ~umask), ("f", 0o666 & ~umask)}
