"""Classifier: a fitted model with its label spec; predict, save and load.

Follows scikit-learn's habits: the constructor stores settings; ``fit`` returns self; fitted attributes end
in ``_``; ``predict`` / ``predict_proba`` return tables with the input's id carried through.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ._fs import atomic_folder, check_replaceable
from .config import TrainConfig
from .errors import FineclassError
from .labels import LabelSpec
from .scoring import Scorer, probability_names

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
    def scorer(self) -> Scorer:
        """The fitted parts that scoring uses (the model as it is now, e.g. after ``merge_for_inference``).

        Returns:
            A :class:`fineclass.scoring.Scorer`.

        Raises:
            FineclassError: naming ``model`` when this Classifier is not fitted.
        """
        self._check_fitted()
        return Scorer(self.method_, self.module_, self.tokenizer_, self.spec_, self.device_,
                      int(self.manifest_["config"]["max_length"]), self.thresholds_)

    def predict(self, data: Any, *, text: str = "text", id: str | None = None, batch_tokens: int | None = None,
                probabilities: bool = True, progress: bool = False) -> pa.Table:
        """One row per document: id, the predicted label(s), confidence, a truncation flag, probabilities."""
        return self.scorer().predict(data, text=text, id=id, batch_tokens=batch_tokens,
                                     probabilities=probabilities, progress=progress)

    def predict_proba(self, data: Any, *, text: str = "text", id: str | None = None,
                      batch_tokens: int | None = None) -> pa.Table:
        """id plus one probability column per output (``p_<class>``, or ``p_<dimension>=<level>``)."""
        out = self.predict(data, text=text, id=id, batch_tokens=batch_tokens)
        return out.select(["id"] + [c for c in out.column_names if c.startswith("p_")])

    def probability_names(self) -> list[str]:
        return probability_names(self.spec_)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> str:
        """Save to a folder: weights (safetensors), tokenizer, labels.json and fineclass.json (the manifest)."""
        from .methods import get_method
        from .manifest import write_json_atomic
        self._check_fitted()
        path = Path(path)
        check_replaceable(path, overwrite, "fineclass.json", "a fineclass model")
        with atomic_folder(path) as tmp:
            weights = get_method(self.method).save(self.module_, self.tokenizer_, tmp)
            self.spec_.save(tmp / "labels.json")
            manifest = dict(self.manifest_)
            manifest.update(weights)
            manifest["format_version"] = FORMAT_VERSION
            write_json_atomic(tmp / "fineclass.json", manifest)
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


def to_long(predictions: Any) -> pa.Table:
    """Multi-label or dimension->level predictions as long rows: (id, label) or (id, dimension, level, confidence)."""
    from .tables import read_table
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
