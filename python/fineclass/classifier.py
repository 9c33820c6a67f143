"""The fitted model: ``Classifier``, and the two ways to get one, ``train()`` and ``load()``.

Follows scikit-learn's habits: the constructor stores settings; ``fit`` returns self; fitted attributes end in
``_``; ``predict`` / ``predict_proba`` return tables with the input's id carried through. Training itself is
``training.fit``; scoring is ``scoring.Scorer``; a Classifier holds what they produce and saves it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ._fs import atomic_folder, check_folder_files, check_replaceable, read_small_file
from .config import TrainConfig
from .errors import FineclassError, warn_user
from .labels import LabelSpec
from .manifest import weights_digest, write_json_atomic
from .methods import Method, get_method
from .methods.base import check_no_pickle, pick_device
from .models import resolve_base
from .scoring import PredictOptions, Scorer, probability_names
from .tables import read_table
from .training import fit

FORMAT_VERSION = 1


class Classifier:
    """A text classifier fine-tuned from a small open model.

    Args:
        model: a built-in alias (``"minilm"``, ``"smollm2-135m"``), a local folder or a hub id.
        method: ``"head"`` (a classification head) or ``"generative"`` (the label as text, scored); any
            registered method's name.
        config: a :class:`TrainConfig` or a dict of its settings.
        trust_remote_code: let transformers run a model's own Python code (off unless you trust it).

    Attributes:
        classes_: the classes (or dimensions), in the type the labels had.
        spec_: the label set (a ``LabelSpec``).
        manifest_: what a reviewer needs to replicate the model: versions, seeds, hashes, config, metrics.
        history_: the loss per epoch.
        thresholds_: the presence threshold of the multi-label shapes.

    Example:
        >>> clf = Classifier(model="minilm").fit(train_table, label="topic")  # doctest: +SKIP
        >>> clf.predict(new_docs)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str = "minilm",
        method: str = "head",
        config: TrainConfig | dict | None = None,
        trust_remote_code: bool = False,
    ):
        self.model = model
        self.method = method
        self.config = config
        self.trust_remote_code = trust_remote_code

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: Any,
        *,
        text: str = "text",
        label: Any = "label",
        id: str | None = None,
        labels: Any = None,
        codebook: Any = None,
        kind: str | None = None,
        levels: Any = None,
        spec: LabelSpec | None = None,
        progress: bool = True,
        resume: bool = False,
    ) -> "Classifier":
        """Fine-tune on ``data``; :func:`train` describes every argument.

        Args:
            data: the training documents.
            text: the text column.
            label: the label column (or a (dimension, level) pair with ``labels``).
            id: the id column.
            labels: a long label table.
            codebook: names and descriptions of the classes.
            kind: the shape, when the data leave it open.
            levels: the ordered levels (dimlevel).
            spec: a fixed label set.
            progress: show a progress bar.
            resume: continue from the checkpoint in ``config.checkpoint_dir``.

        Returns:
            This Classifier, fitted.
        """
        trained = fit(
            data,
            model=self.model,
            method=self.method,
            config=self.config,
            trust_remote_code=self.trust_remote_code,
            text=text,
            label=label,
            id=id,
            labels=labels,
            codebook=codebook,
            kind=kind,
            levels=levels,
            spec=spec,
            progress=progress,
            resume=resume,
        )
        self.config = trained.config
        self.validation_ = trained.validation  # kept in memory only, for export's fidelity check
        return self._adopt(
            method=trained.method,
            module=trained.module,
            tokenizer=trained.tokenizer,
            spec=trained.spec,
            device=trained.device,
            thresholds=trained.thresholds,
            manifest=trained.manifest,
            history=trained.history,
        )

    def _adopt(
        self,
        *,
        method: Method,
        module: Any,
        tokenizer: Any,
        spec: LabelSpec,
        device: Any,
        thresholds: dict,
        manifest: dict,
        history: list,
    ) -> "Classifier":
        """The one place that makes a Classifier fitted: used by fit() (so train()), load() and zero-shot."""
        self.method_, self.module_, self.tokenizer_, self.spec_, self.device_ = method, module, tokenizer, spec, device
        self.thresholds_, self.manifest_, self.history_ = dict(thresholds), manifest, list(history)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise FineclassError(
                "this Classifier is not fitted yet: call fit() or fineclass.train() first, or "
                "fineclass.load() a saved one.",
                "model",
            )

    @property
    def classes_(self) -> list:
        """The classes (or the dimensions), in the type the labels had (integer codes come back as int)."""
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
        return Scorer(
            self.method_,
            self.module_,
            self.tokenizer_,
            self.spec_,
            self.device_,
            int(self.manifest_["config"]["max_length"]),
            self.thresholds_,
        )

    def predict(
        self,
        data: Any,
        *,
        text: str = "text",
        id: str | None = None,
        batch_tokens: int | None = None,
        probabilities: bool = True,
        progress: bool = False,
    ) -> pa.Table:
        """Predict the labels of documents.

        Args:
            data: the documents: any table, or a Parquet/CSV path (for large corpora use ``fineclass.classify``
                with ``output=``).
            text: the text column.
            id: the id column (None: a column named ``id``, else the row number).
            batch_tokens: tokens per batch (rows x longest row); None for the device's default.
            probabilities: add one probability column per output.
            progress: show a progress bar.

        Returns:
            One row per document, in input order: id, ``label`` and ``confidence`` (single-label) or ``labels``
            and ``n_labels``, ``truncated`` (the text was cut to max_length), ``status`` (``ok`` or
            ``empty_text``), and ``p_<class>`` (or ``p_<dimension>=<level>``) columns.

        Raises:
            FineclassError: naming ``model`` when not fitted, or the argument at fault.

        Example:
            >>> clf.predict({"text": ["a fine film", "dull"]})  # doctest: +SKIP
        """
        options = PredictOptions(
            text=text, id=id, batch_tokens=batch_tokens, probabilities=probabilities, progress=progress
        )
        return self.scorer().predict(data, options)

    def predict_proba(
        self, data: Any, *, text: str = "text", id: str | None = None, batch_tokens: int | None = None
    ) -> pa.Table:
        """The probabilities alone; see :meth:`predict`.

        Args:
            data: the documents.
            text: the text column.
            id: the id column.
            batch_tokens: tokens per batch.

        Returns:
            id plus one probability column per output (``p_<class>``, or ``p_<dimension>=<level>``).
        """
        out = self.predict(data, text=text, id=id, batch_tokens=batch_tokens)
        return out.select(["id"] + [c for c in out.column_names if c.startswith("p_")])

    def probability_names(self) -> list[str]:
        """The names of the probability columns, in the order of the model's outputs.

        Returns:
            ``p_<class>`` per class, or ``p_<dimension>=<level>`` for the dimension->level shape.
        """
        self._check_fitted()
        return probability_names(self.spec_)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> str:
        """Save to a folder: weights (safetensors), tokenizer, labels.json and fineclass.json (the manifest).

        Args:
            path: the folder; written atomically (a reader sees the old model or the new one).
            overwrite: replace a folder that holds a saved model.

        Returns:
            The folder's path.

        Raises:
            FineclassError: naming ``path`` when the folder is not empty and ``overwrite`` is false, or holds
                files that are not a fineclass model; naming ``model`` when not fitted.
        """
        self._check_fitted()
        path = Path(path)
        check_replaceable(path, overwrite, "fineclass.json", "a fineclass model")
        with atomic_folder(path) as tmp:
            weights = self.method_.save(self.module_, self.tokenizer_, tmp)
            self.spec_.save(tmp / "labels.json")
            manifest = dict(self.manifest_)
            manifest.update(weights)
            manifest["weights_sha256"] = weights_digest(tmp)  # load() refuses weights that do not match
            manifest["format_version"] = FORMAT_VERSION
            write_json_atomic(tmp / "fineclass.json", manifest)
        return str(path)

    def __repr__(self) -> str:
        if not hasattr(self, "module_"):
            return f"Classifier(model={self.model!r}, method={self.method!r}) [not fitted]"
        m = self.manifest_
        return (
            f"Classifier(model={self.model!r}, method={self.method!r}, {self.spec_!r}, "
            f"finetune={m.get('finetune')!r}, trained on {m.get('n_train')} documents)"
        )


def train(
    data: Any,
    *,
    text: str = "text",
    label: Any = "label",
    id: str | None = None,
    labels: Any = None,
    model: str = "minilm",
    method: str = "head",
    codebook: Any = None,
    config: Any = None,
    kind: str | None = None,
    levels: Any = None,
    spec: LabelSpec | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    resume: bool = False,
    **settings: Any,
) -> Classifier:
    """Fine-tune ``model`` to predict ``label`` from ``text``.

    Args:
        data: the training documents: any table, or a Parquet/CSV path.
        text: the text column.
        label: the label column: scalars (single-label) or lists (multi-label); with ``labels``, the label
            column of that table, or a pair (dimension, level) for the dimension->level shape.
        id: the id column (None: a column named ``id``, else the row number).
        labels: a long label table (one row per id and label, or per id, dimension and level).
        model: a built-in alias (``"minilm"``, ``"smollm2-135m"``), a local folder or a hub id.
        method: ``"head"`` or ``"generative"`` (any registered method).
        codebook: names and descriptions of the classes: ``{code: name}``, ``{code: {"name", "description"}}``,
            a JSON file or a table with code, name[, description].
        config: a :class:`TrainConfig` or a dict of its settings.
        kind: ``"single"``, ``"multi"`` or ``"dimlevel"``; inferred from the data when None.
        levels: the ordered levels of the dimension->level shape (default low, medium, high).
        spec: a fixed label set (a LabelSpec), e.g. so that runs on subsets share one set of classes.
        trust_remote_code: let transformers run a model's own Python code.
        progress: show a progress bar and a closing line.
        resume: continue from the checkpoint in ``config.checkpoint_dir``.
        **settings: ``TrainConfig`` settings as keywords (``epochs=2``), on top of ``config``.

    Returns:
        A fitted :class:`Classifier`.

    Raises:
        FineclassError: naming the argument or setting at fault.

    Example:
        >>> clf = fineclass.train(tweets, label="topic", model="minilm", epochs=2)  # doctest: +SKIP
    """
    clf = Classifier(
        model=model,
        method=method,
        config=TrainConfig.with_settings(config, settings),
        trust_remote_code=trust_remote_code,
    )
    return clf.fit(
        data,
        text=text,
        label=label,
        id=id,
        labels=labels,
        codebook=codebook,
        kind=kind,
        levels=levels,
        spec=spec,
        progress=progress,
        resume=resume,
    )


# readers of models kept in another format than a saved folder, tried in order by load(): (accepts(path), read)
# where read(path, threads=, decode_tokens=) returns a Classifier; fineclass.llamacpp adds GGUF exports
READERS: list[tuple[Callable[[Any], bool], Callable[..., Classifier]]] = []


def register_reader(accepts: Callable[[Any], bool], read: Callable[..., Classifier]) -> None:
    """Let :func:`load` read another format than a saved folder.

    Args:
        accepts: ``accepts(path)``: whether ``path`` is in this format.
        read: ``read(path, threads=..., decode_tokens=...)``, returning a fitted Classifier.
    """
    READERS.append((accepts, read))


def load(
    path: str | Path,
    *,
    base_model: str | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    trust_hub: bool = False,
    threads: int | None = None,
    decode_tokens: int | None = None,
) -> Classifier:
    """Load a Classifier saved with ``save()``, or a GGUF file exported by ``export(..., format="gguf")``.

    The folder is checked before anything is used: it must hold regular files only (no pipe, device or link out
    of the folder), its weight files must match the SHA-256 ``save()`` recorded, and they must hold every tensor
    the model needs. A LoRA adapter's base is the folder it was trained on (by absolute path) or the hub model at
    the revision it was trained on.

    A GGUF file is read by ``fineclass.llamacpp`` (registered with :func:`register_reader` when ``fineclass.load``
    is first used) and scored by llama.cpp on the CPU; the torch settings do not apply to it.

    Args:
        path: the saved model's folder; or a ``.gguf`` file (its ``.json`` sidecar beside it), or an export folder
            holding one ``.gguf`` file.
        base_model: the base model of a LoRA adapter, where the one recorded in the manifest is not found.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` (a GGUF file runs on the CPU).
        trust_remote_code: let transformers run a model's own Python code.
        allow_pickle: accept pickle weight files (they can run code when loaded; refused by default).
        trust_hub: download a hub base model that is not the pinned one the adapter was trained on (an old
            manifest without a revision, or a hub id given as ``base_model``).
        threads: GGUF: CPU threads for llama.cpp (default: torch's setting).
        decode_tokens: GGUF: tokens per llama.cpp batch when scoring (None: 1024).

    Returns:
        A fitted :class:`Classifier`, predicting as the saved one did; for a GGUF file one run by llama.cpp, which
        predicts, classifies and generates like a torch one.

    Raises:
        FineclassError: naming ``path`` when it is not a saved model or a GGUF export, holds something other than
            regular files, or its files are damaged, changed or incomplete, or a fine-tuned GGUF file lost its
            sidecar; ``base_model`` when the base of an adapter is missing; ``trust_hub`` when a hub base needs
            consent.

    Example:
        >>> clf = fineclass.load("models/topics")  # doctest: +SKIP
        >>> gguf = fineclass.load("deploy/model-q4_k_m.gguf")  # doctest: +SKIP
    """
    for accepts, read in READERS:
        if accepts(path):
            return read(path, threads=threads, decode_tokens=decode_tokens)
    folder = Path(path)
    if not folder.exists():
        raise FineclassError(f"`path` {str(path)!r} does not exist.", "path")
    if not folder.is_dir():
        raise FineclassError(f"`path` {str(path)!r} is not a folder; pass the folder save() wrote.", "path")
    check_folder_files(folder, "path")
    if not (folder / "fineclass.json").exists():
        raise FineclassError(f"`path` {str(path)!r} is not a saved fineclass model (no fineclass.json).", "path")
    try:
        manifest = json.loads(read_small_file(folder / "fineclass.json").decode("utf-8"))
        spec = LabelSpec.from_dict(json.loads(read_small_file(folder / "labels.json").decode("utf-8")))
        if not isinstance(manifest, dict) or "method" not in manifest:
            raise ValueError("fineclass.json is not a fineclass manifest")
    except FineclassError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise FineclassError(
            f"`path` {str(path)!r}: fineclass.json or labels.json is damaged ({e}). Save the model again.", "path"
        ) from None
    weights = manifest.get("weights")
    if weights not in ("model", "adapter") or not (folder / weights).is_dir():
        raise FineclassError(
            f"`path` {str(path)!r}: the manifest names weights {weights!r} that are not in the folder.", "path"
        )
    check_no_pickle(folder, allow_pickle, "path")  # named first: a pickle file also changes the weights' hash
    check_weights(folder, manifest)
    dev = pick_device(device)
    base, revision = None, None
    if weights == "adapter":
        base, revision = resolve_base(manifest, base_model, trust_hub)
    method = get_method(manifest["method"])
    from safetensors import SafetensorError

    try:
        module, tok = method.load(
            folder,
            {**manifest, "base_revision": revision},
            spec,
            dev,
            base,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        )
    except FineclassError:
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # damaged weights or tokenizer files
        raise FineclassError(
            f"`path` {str(path)!r}: the model files could not be loaded ({type(e).__name__}: "
            f"{e}). Save the model again.",
            "path",
        ) from None
    clf = Classifier(
        model=manifest.get("model"),
        method=manifest["method"],
        config=TrainConfig.from_dict(manifest.get("config")),
        trust_remote_code=trust_remote_code,
    )
    return clf._adopt(
        method=method,
        module=module,
        tokenizer=tok,
        spec=spec,
        device=dev,
        thresholds=manifest.get("thresholds", {}),
        manifest=manifest,
        history=manifest.get("history", []),
    )


def check_weights(folder: str | Path, manifest: dict) -> None:
    """Refuse a saved model whose weight files are not the ones ``save()`` wrote (changed, damaged or swapped).

    Args:
        folder: the saved model's folder.
        manifest: its ``fineclass.json``.

    Raises:
        FineclassError: naming ``path`` when the weights' SHA-256 differs from the manifest's ``weights_sha256``.
            A model saved before the hash was recorded loads with a warning.
    """
    if "weights_sha256" not in manifest:
        warn_user(
            f"the model in {str(folder)!r} was saved by an older fineclass without a hash of its weights, so they "
            f"cannot be checked; load it and save() it again to record one."
        )
        return
    if weights_digest(folder) != manifest["weights_sha256"]:
        raise FineclassError(
            f"`path` {str(folder)!r}: the weight files do not match the hash save() recorded in fineclass.json; they "
            f"were changed or damaged after saving. Restore the saved folder, or train and save the model again.",
            "path",
        )


def to_long(predictions: Any) -> pa.Table:
    """Multi-label or dimension->level predictions as long rows.

    Args:
        predictions: what ``predict()`` returns for a multi-label or dimension->level model (a table or path).

    Returns:
        ``(id, label)`` rows, or ``(id, dimension, level, confidence)`` rows: one per predicted label.

    Raises:
        FineclassError: naming ``predictions`` when it has no ``id`` and ``labels`` columns.

    Example:
        >>> to_long(clf.predict(tweets))  # doctest: +SKIP
    """
    t = read_table(predictions, "predictions")
    if "labels" not in t.column_names or "id" not in t.column_names:
        raise FineclassError(
            "`predictions` needs columns `id` and `labels` (the output of predict() for a "
            "multi-label or dimension->level model).",
            "predictions",
        )
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
