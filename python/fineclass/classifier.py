"""Classifier: a fitted model with its label spec; predict, save and load.

Follows scikit-learn's habits: the constructor stores settings; ``fit`` returns self; fitted attributes end
in ``_``; ``predict`` / ``predict_proba`` return tables with the input's id carried through.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .config import TrainConfig
from .errors import FineclassError
from .labels import LabelSpec

FORMAT_VERSION = 1


class Classifier:
    """A text classifier fine-tuned from a small open model.

    Parameters
    ----------
    model: a built-in alias (``"minilm"``, ``"smollm2-135m"``), a local folder or a hub id.
    method: ``"head"`` (a classification head) or ``"generative"`` (the label as text, scored).
    config: a :class:`TrainConfig` or a dict of its settings.
    trust_remote_code: let transformers run a model's own Python code (off unless you trust it).
    """

    def __init__(self, model: str = "minilm", method: str = "head", config: TrainConfig | dict | None = None,
                 trust_remote_code: bool = False):
        self.model = model
        self.method = method
        self.config = config
        self.trust_remote_code = trust_remote_code

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Any, *, text: str = "text", label: Any = "label", id: str | None = None,
            labels: Any = None, codebook: Any = None, kind: str | None = None, levels=None,
            spec: LabelSpec | None = None, progress: bool = True, resume: bool = False) -> "Classifier":
        from .training import fit_classifier
        return fit_classifier(self, data, text=text, label=label, id=id, labels=labels, codebook=codebook,
                              kind=kind, levels=levels, spec=spec, progress=progress, resume=resume)

    def _check_fitted(self):
        if not hasattr(self, "module_"):
            raise FineclassError("this Classifier is not fitted yet: call fit() or fineclass.train() first, or "
                                 "fineclass.load() a saved one.", "model")

    @property
    def classes_(self) -> list:
        self._check_fitted()
        return [self.spec_.decode_value(c) for c in self.spec_.classes]

    # ------------------------------------------------------------------ predicting
    def predict(self, data: Any, *, text: str = "text", id: str | None = None, batch_tokens: int | None = None,
                probabilities: bool = True, progress: bool = False) -> pa.Table:
        """One row per document: id, the predicted label(s), confidence, a truncation flag, probabilities."""
        from .infer import predict_table
        self._check_fitted()
        return predict_table(self, data, text=text, id=id, batch_tokens=batch_tokens,
                             probabilities=probabilities, progress=progress)

    def predict_proba(self, data: Any, *, text: str = "text", id: str | None = None,
                      batch_tokens: int | None = None) -> pa.Table:
        """id plus one probability column per output (``p_<class>``, or ``p_<dimension>=<level>``)."""
        out = self.predict(data, text=text, id=id, batch_tokens=batch_tokens)
        return out.select(["id"] + [c for c in out.column_names if c.startswith("p_")])

    def probability_names(self) -> list[str]:
        spec = self.spec_
        if spec.kind == "dimlevel":
            return [f"p_{d}={lv}" for d in spec.classes for lv in ["absent", *spec.levels]]
        return [f"p_{c}" for c in spec.classes]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> str:
        """Save to a folder: weights (safetensors), tokenizer, labels.json and fineclass.json (the manifest)."""
        from .methods import get_method
        from .manifest import write_json_atomic
        self._check_fitted()
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise FineclassError(f"`path` {str(path)!r} exists and is not empty; pass overwrite=True or choose "
                                     f"another folder.", "path")
            if not (path / "fineclass.json").exists():
                raise FineclassError(f"`path` {str(path)!r} holds files that are not a fineclass model; refusing "
                                     f"to overwrite them.", "path")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=str(path.parent)))
        try:
            weights = get_method(self.method).save(self.module_, self.tokenizer_, tmp)
            self.spec_.save(tmp / "labels.json")
            manifest = dict(self.manifest_)
            manifest.update(weights)
            manifest["format_version"] = FORMAT_VERSION
            write_json_atomic(tmp / "fineclass.json", manifest)
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return str(path)

    def __repr__(self) -> str:
        if not hasattr(self, "module_"):
            return f"Classifier(model={self.model!r}, method={self.method!r}) [not fitted]"
        m = self.manifest_
        return (f"Classifier(model={self.model!r}, method={self.method!r}, {self.spec_!r}, "
                f"finetune={m.get('finetune')!r}, trained on {m.get('n_train')} documents)")


def load(path: str | Path, *, base_model: str | None = None, device: str = "auto",
         trust_remote_code: bool = False, allow_pickle: bool = False) -> Classifier:
    """Load a Classifier saved with ``save()``. Pickle weights are refused unless ``allow_pickle=True``."""
    from .methods import get_method
    from .methods.base import pick_device
    from .models import resolve
    folder = Path(path)
    if not folder.exists():
        raise FineclassError(f"`path` {str(path)!r} does not exist.", "path")
    from .llamacpp.classifier import is_gguf, load_gguf  # [gguf hook] a .gguf with its sidecar, run by llama.cpp
    if is_gguf(folder):
        return load_gguf(folder)
    if not (folder / "fineclass.json").exists():
        raise FineclassError(f"`path` {str(path)!r} is not a saved fineclass model (no fineclass.json).", "path")
    try:
        manifest = json.loads((folder / "fineclass.json").read_text(encoding="utf-8"))
        spec = LabelSpec.load(folder / "labels.json")
        if not isinstance(manifest, dict) or "method" not in manifest:
            raise ValueError("fineclass.json is not a fineclass manifest")
    except FineclassError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise FineclassError(f"`path` {str(path)!r}: fineclass.json or labels.json is damaged ({e}). Save the model "
                             f"again.", "path") from None
    weights = manifest.get("weights")
    if weights not in ("model", "adapter") or not (folder / weights).is_dir():
        raise FineclassError(f"`path` {str(path)!r}: the manifest names weights {weights!r} that are not in the "
                             f"folder.", "path")
    dev = pick_device(device)
    base = None
    if weights == "adapter":
        base = resolve(base_model or manifest.get("model"))
    method = get_method(manifest["method"])
    from safetensors import SafetensorError
    try:
        module, tok = method.load(folder, manifest, spec, dev, base, trust_remote_code=trust_remote_code,
                                  allow_pickle=allow_pickle)
    except FineclassError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # damaged weights or tokenizer files
        raise FineclassError(f"`path` {str(path)!r}: the model files could not be loaded ({type(e).__name__}: "
                             f"{e}). Save the model again.", "path") from None
    clf = Classifier(model=manifest.get("model"), method=manifest["method"],
                     config=TrainConfig.from_dict(manifest.get("config")), trust_remote_code=trust_remote_code)
    clf.module_, clf.tokenizer_, clf.spec_ = module, tok, spec
    clf.thresholds_ = manifest.get("thresholds", {})
    clf.device_ = dev
    clf.manifest_ = manifest
    clf.method_ = method
    return clf


# ---------------------------------------------------------------------- decoding
def decode(probs: np.ndarray, spec: LabelSpec, thresholds: dict) -> dict:
    """Probabilities -> prediction columns (a dict of pyarrow arrays) for one of the three shapes."""
    n = probs.shape[0]
    if spec.kind == "single":
        idx = probs.argmax(axis=1)
        labels = [spec.decode_value(spec.classes[i]) for i in idx]
        return {"label": pa.array(labels, type=spec.arrow_type()),
                "confidence": pa.array(probs[np.arange(n), idx].astype(np.float64))}
    t = float(thresholds.get("presence", 0.5))
    if spec.kind == "multi":
        chosen = probs >= t
        if spec.max_labels:
            order = np.argsort(-probs, axis=1)[:, :spec.max_labels]
            keep = np.zeros_like(chosen)
            np.put_along_axis(keep, order, True, axis=1)
            chosen &= keep
        labels = [[spec.decode_value(spec.classes[j]) for j in np.flatnonzero(row)] for row in chosen]
        return {"labels": pa.array(labels, type=pa.list_(spec.arrow_type())),
                "n_labels": pa.array(chosen.sum(axis=1).astype(np.int64))}
    d, l1 = len(spec.classes), len(spec.levels) + 1
    p = probs.reshape(n, d, l1)
    presence = 1.0 - p[:, :, 0]
    level = p[:, :, 1:].argmax(axis=2)
    chosen = presence >= t
    rows = []
    for i in range(n):
        rows.append([{"dimension": spec.classes[j], "level": spec.levels[level[i, j]],
                      "confidence": float(p[i, j, 1 + level[i, j]])} for j in np.flatnonzero(chosen[i])])
    typ = pa.list_(pa.struct([("dimension", pa.string()), ("level", pa.string()), ("confidence", pa.float64())]))
    return {"labels": pa.array(rows, type=typ), "n_labels": pa.array(chosen.sum(axis=1).astype(np.int64))}


def to_long(predictions: Any) -> pa.Table:
    """Multi-label or dimension->level predictions as long rows: (id, label) or (id, dimension, level, confidence)."""
    from .data import read_table
    t = read_table(predictions, "predictions")
    if "labels" not in t.column_names or "id" not in t.column_names:
        raise FineclassError("`predictions` needs columns `id` and `labels` (the output of predict() for a "
                             "multi-label or dimension->level model).", "predictions")
    ids = t.column("id")
    lab = t.column("labels").combine_chunks()
    lengths = np.diff(lab.offsets.to_numpy())
    take = np.repeat(np.arange(t.num_rows), lengths)
    flat = lab.flatten()
    out = {"id": ids.take(pa.array(take))}
    if pa.types.is_struct(flat.type):
        for f in flat.type:
            out[f.name] = flat.field(f.name)
    else:
        out["label"] = flat
    return pa.table(out)
