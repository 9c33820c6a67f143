"""The Method interface and its registry, and pieces shared by the methods.

Shared pieces: tokenising with a truncation count, devices, LoRA set-up, safe loading.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch

from ..errors import FineclassError, warn_user
from ..labels import LabelSpec

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass
class Encoded:
    """Documents as token ids, with a flag per document that was cut to ``max_length``.

    Attributes:
        ids: a list of token ids per document.
        truncated: a bool per document.
    """

    ids: list  # list of lists of token ids, truncated to max_length
    truncated: np.ndarray  # bool per document

    def lengths(self) -> np.ndarray:
        """Tokens per document.

        Returns:
            An int64 array.
        """
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


@dataclass(frozen=True)
class SavedModel:
    """A saved model's folder, as :meth:`Method.read` gets it once :meth:`Method.load` checked it.

    Attributes:
        folder: the saved model's folder.
        manifest: its ``fineclass.json`` (``base_revision``: the base model's pinned revision, or None).
        spec: its label set.
        device: where the model goes.
        base_path: the base model (for an adapter), or None.
        trust_remote_code: let transformers run the model's own code.
        allow_pickle: accept pickle weight files (``load`` checked the folder already; methods that read a
            backbone of their own pass it on).
    """

    folder: Path
    manifest: dict
    spec: LabelSpec
    device: torch.device
    base_path: str | None
    trust_remote_code: bool = False
    allow_pickle: bool = False


class Method(abc.ABC):
    """How a backbone turns text into label probabilities: what the training loop and the scorer call.

    A method registers itself under a name with :func:`register`; ``TrainConfig``'s callers and saved models
    name it (``method="head"``), and :func:`get_method` makes a fresh instance. Probabilities share one layout
    for every method: single (n, K) summing to one per row; multi (n, K) per-class probabilities; dimlevel
    (n, D * (L + 1)): for each dimension, P(absent), P(level 1), ..., P(level L).
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def build(
        self, model_path: str, spec: LabelSpec, config: Any, device: torch.device, trust_remote_code: bool = False
    ) -> tuple[Any, Any, str]:
        """A fresh trainable model.

        Args:
            model_path: a local folder or hub id (see ``models.resolve``).
            spec: the label set.
            config: the run's ``TrainConfig``.
            device: where the model goes.
            trust_remote_code: let transformers run the model's own code.

        Returns:
            ``(module, tokenizer, finetune)``, ``finetune`` being what was chosen: ``"full"``, ``"lora"`` or
            ``"qlora"``.
        """

    @abc.abstractmethod
    def defaults(self, finetune: str) -> dict:
        """The settings this method uses where ``TrainConfig`` leaves them at ``None``.

        Args:
            finetune: the fine-tuning mode :meth:`build` chose.

        Returns:
            ``{setting: value}`` (learning_rate, warmup_ratio, max_grad_norm, lora_r, lora_alpha, ...).
        """

    @abc.abstractmethod
    def encode(self, tokenizer: Any, texts: list[str], max_length: int) -> "Encoded":
        """Token ids per document, cut to ``max_length``, with a flag per document that was cut.

        Args:
            tokenizer: the model's tokenizer.
            texts: the documents.
            max_length: the most tokens of a document the model reads.

        Returns:
            An :class:`Encoded`.
        """

    @abc.abstractmethod
    def collate(self, tokenizer: Any, ids_list: list, device: torch.device) -> Any:
        """One batch for :meth:`loss` and :meth:`probabilities`, from encoded documents.

        Args:
            tokenizer: the model's tokenizer.
            ids_list: token ids per document, as :meth:`encode` made them.
            device: where the batch goes.

        Returns:
            Whatever this method's :meth:`loss` and :meth:`probabilities` take.
        """

    @abc.abstractmethod
    def loss(
        self, module: Any, batch: Any, targets: torch.Tensor, spec: LabelSpec, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss of one batch.

        Args:
            module: the model.
            batch: from :meth:`collate`.
            targets: the encoded labels (``LabelSpec.encode``).
            spec: the label set.
            weights: class weights against imbalance, or None.

        Returns:
            A scalar tensor.
        """

    @abc.abstractmethod
    def probabilities(self, module: Any, batch: Any, spec: LabelSpec) -> np.ndarray:
        """Label probabilities of one batch, in the layout described on the class.

        Args:
            module: the model.
            batch: from :meth:`collate`.
            spec: the label set.

        Returns:
            An array (documents, ``spec.n_outputs``).
        """

    @abc.abstractmethod
    def save(self, module: Any, tokenizer: Any, folder: Path) -> dict:
        """Write the weights and tokenizer into ``folder``.

        Args:
            module: the model.
            tokenizer: its tokenizer.
            folder: the model folder being written.

        Returns:
            Entries for the manifest, at least ``{"weights": "model" | "adapter"}``.
        """

    @staticmethod
    def save_pretrained(module: Any, tokenizer: Any, folder: Path) -> None:
        """Write a transformers model (or adapter) as safetensors, with its tokenizer, into one folder.

        Args:
            module: the model or PEFT adapter.
            tokenizer: its tokenizer.
            folder: where both go (``model/`` or ``adapter/`` of a saved model).
        """
        module.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))

    @staticmethod
    def with_lora(module: Any, config: Any, task: str, defaults: dict, **options: Any) -> Any:
        """Wrap a model in a new LoRA adapter, with the rank, alpha, dropout and target layers of a ``TrainConfig``.

        Args:
            module: the transformers model.
            config: the ``TrainConfig`` (``lora_r`` and ``lora_alpha`` default to ``defaults``; ``lora_targets`` to
                every linear layer).
            task: peft's task type: ``"SEQ_CLS"`` or ``"CAUSAL_LM"``.
            defaults: the method's ``lora_r`` and ``lora_alpha``.
            **options: more ``LoraConfig`` settings (e.g. ``modules_to_save``).

        Returns:
            The PEFT model.
        """
        from peft import LoraConfig, TaskType, get_peft_model

        lcfg = LoraConfig(
            task_type=TaskType[task],
            r=config.lora_r or defaults["lora_r"],
            lora_alpha=config.lora_alpha or defaults["lora_alpha"],
            lora_dropout=config.lora_dropout,
            target_modules=config.lora_targets or "all-linear",
            **options,
        )
        return get_peft_model(module, lcfg)

    def load(
        self,
        folder: Path,
        manifest: dict,
        spec: LabelSpec,
        device: torch.device,
        base_path: str | None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ) -> tuple[Any, Any]:
        """Read back what :meth:`save` wrote: the checks every method needs, then :meth:`read`.

        Args:
            folder: the saved model's folder.
            manifest: its ``fineclass.json``.
            spec: its label set.
            device: where the model goes.
            base_path: the base model (for an adapter), or None.
            trust_remote_code: let transformers run the model's own code.
            allow_pickle: accept pickle weight files.

        Returns:
            ``(module, tokenizer)``, the module in evaluation mode.

        Raises:
            FineclassError: naming ``path`` when the folder holds pickle files, ``base_model`` when the model is
                saved on a base model that was not found or holds pickle files.
        """
        quiet_transformers()
        check_no_pickle(folder, allow_pickle, "path")
        if manifest["weights"] != "model":  # an adapter (or a zero-shot model's note) on a base model
            if base_path is None:
                raise FineclassError(
                    "this model is saved on a base model (a LoRA adapter, or a zero-shot prompt) and its base "
                    "model could not be found; pass `base_model=` with the base model's folder or hub id.",
                    "base_model",
                )
            check_no_pickle(base_path, allow_pickle, "base_model")
        return self.read(SavedModel(folder, manifest, spec, device, base_path, trust_remote_code, allow_pickle))

    def read(self, saved: SavedModel) -> tuple[Any, Any]:
        """Build the model from a saved folder that :meth:`load` checked; every method that saves defines it.

        Args:
            saved: the folder and what ``load`` knows of it.

        Returns:
            ``(module, tokenizer)``, the module in evaluation mode.
        """
        raise NotImplementedError(f"the {self.name!r} method cannot read a saved model")

    # ------------------------------------------------------------------ optional hooks
    #: False for a method fitted in closed form on frozen features (``features`` and ``fit_direct``) instead of
    #: the epoch loop.
    trains_by_gradient: ClassVar[bool] = True
    #: the fewest optimiser steps of a run, however few the documents (``TrainConfig.extra["min_steps"]`` wins).
    min_steps: ClassVar[int] = 0
    #: single-label data: a validation split of fewer documents than this cannot choose an epoch, so it is folded
    #: back into training and the last epoch is kept (``TrainConfig.extra["min_validation"]`` wins; 0: never).
    min_validation: ClassVar[int] = 0
    #: after the epoch loop, train the trainable parts again from their start on every document (training and
    #: validation splits) up to the chosen epoch (``TrainConfig.extra["refit"]`` wins; see ``training.fit``).
    refits: ClassVar[bool] = False
    #: the share of training documents held out when ``TrainConfig.validation`` is None.
    validation_share: ClassVar[float] = 0.1

    def prepare(self, module: Any, tokenizer: Any, ids_list: list, targets: np.ndarray, spec: LabelSpec) -> None:
        """Initialise the model from the training documents before the first step (nothing by default).

        Called once per run, also before a checkpoint is resumed, so it must not depend on training.

        Args:
            module: the model :meth:`build` made.
            tokenizer: its tokenizer.
            ids_list: the training documents' token ids (the validation documents excluded).
            targets: their encoded labels.
            spec: the label set.
        """
        return None

    def param_groups(self, module: Any, config: Any) -> list[dict] | None:
        """The optimiser's parameter groups, when parts of the model train at their own learning rate.

        Args:
            module: the model.
            config: the resolved ``TrainConfig``.

        Returns:
            A list of ``{"params": [...], "lr": ...}``, or None: every trainable parameter at
            ``config.learning_rate``.
        """
        return None

    def monitor(self, spec: LabelSpec) -> str:
        """What picks the best epoch on the validation split, and stops a run early.

        Args:
            spec: the label set.

        Returns:
            ``"loss"`` (the validation loss; the default) or ``"jaccard"`` (the mean per-document Jaccard of the
            multi-label shapes, with thresholds tuned on the validation documents each epoch).
        """
        return "loss"

    def features(self, module: Any, batch: Any) -> np.ndarray:
        """Frozen features of one batch (only for methods with ``trains_by_gradient = False``).

        Args:
            module: the model.
            batch: from :meth:`collate`.

        Returns:
            An array (documents, features).
        """
        raise NotImplementedError(f"the {self.name!r} method trains by gradient and has no frozen features")

    def fit_direct(self, module: Any, features: np.ndarray, targets: np.ndarray, spec: LabelSpec, config: Any):
        """Fit the model in closed form on the training documents' features (``trains_by_gradient = False``).

        Args:
            module: the model (fitted in place).
            features: (documents, features) from :meth:`features`.
            targets: the encoded labels.
            spec: the label set.
            config: the resolved ``TrainConfig``.

        Returns:
            ``(oof, info)``: out-of-fold probabilities of the training documents (documents, ``spec.n_outputs``)
            for threshold tuning, or None; and a dict for the run's history.
        """
        raise NotImplementedError(f"the {self.name!r} method trains by gradient")

    #: True for a method that, after its epoch loop, fits a part of itself in closed form (:meth:`finish`).
    finishes_in_closed_form: ClassVar[bool] = False

    def finish(
        self,
        module: Any,
        features: np.ndarray,
        targets: np.ndarray,
        spec: LabelSpec,
        config: Any,
        val_idx: np.ndarray,
        val_probs: np.ndarray | None,
        score: Any,
    ) -> tuple[np.ndarray | None, dict]:
        """Fit the closed-form part after the epoch loop (only where ``finishes_in_closed_form``).

        Args:
            module: the model, its gradient-trained part at its best epoch (fitted in place).
            features: (documents, features) from :meth:`features`, for every training document.
            targets: the encoded labels of every training document.
            spec: the label set.
            config: the resolved ``TrainConfig``.
            val_idx: the validation documents (possibly none).
            val_probs: the gradient-trained part's probabilities of the validation documents, or None.
            score: a ``training.HeldOutScore``: ``score(probs)`` says how well the validation documents'
                probabilities score (higher is better: mean Jaccard with tuned thresholds for the multi-label
                shapes, accuracy for single-label data), ``score.split(probs, fit, held)`` scores the rows
                ``held`` with the decision rule tuned on the rows ``fit``.

        Returns:
            ``(val_probs, info)``: the whole model's probabilities of the validation documents, with no validation
            document in the closed-form part's fit (for threshold tuning), or None; and a dict for the history.
        """
        raise NotImplementedError(f"the {self.name!r} method has no closed-form part")

    @contextlib.contextmanager
    def scoring_session(self) -> Iterator[None]:
        """The span of one ``predict()`` or ``classify()`` call: work shared by all its batches may be kept here.

        Nothing by default; the generative method computes the prompt head once per session.

        Yields:
            Nothing.
        """
        yield


_METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """A class decorator: make a :class:`Method` available under ``name``.

    Args:
        name: what users pass as ``method=`` and what saved models record.

    Returns:
        The decorator, which returns the class unchanged (with ``name`` set).

    Example:
        >>> @register("head")  # doctest: +SKIP
        ... class HeadMethod(Method): ...
    """

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def method_names() -> tuple[str, ...]:
    """The names of the registered methods.

    Returns:
        The names, in the order they were registered.
    """
    return tuple(_METHODS)


def get_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name``.

    Args:
        name: the method's name (``"head"``, ``"generative"``).

    Returns:
        A new :class:`Method` instance.

    Raises:
        FineclassError: naming ``method`` when no method has that name.
    """
    cls = _METHODS.get(name)
    if cls is None:
        raise FineclassError(f"`method` must be one of {', '.join(_METHODS)}; got {name!r}.", "method")
    return cls()


def encode_texts(tokenizer, texts: list[str], max_length: int, add_special_tokens: bool = True) -> Encoded:
    """Token ids per text, cut to ``max_length``; which documents were cut is recorded, never hidden.

    Args:
        tokenizer: a transformers tokenizer.
        texts: the documents.
        max_length: the most tokens kept per document.
        add_special_tokens: add the model's special tokens ([CLS], BOS...).

    Returns:
        An :class:`Encoded`.
    """
    if len(texts) == 0:  # tokenizers fail on an empty batch; no documents, no tokens
        return Encoded([], np.zeros(0, dtype=bool))
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=add_special_tokens)
    ids = enc["input_ids"]
    if getattr(enc, "encodings", None):
        truncated = np.array([len(e.overflowing) > 0 for e in enc.encodings], dtype=bool)
    else:  # slow tokenizers: compare with an untruncated pass
        full = tokenizer(list(texts), truncation=False, add_special_tokens=add_special_tokens)["input_ids"]
        truncated = np.array([len(f) > len(t) for f, t in zip(full, ids)], dtype=bool)
    return Encoded(ids, truncated)


def pad_batch(ids_list: list, pad_id: int, device, side: str = "right") -> dict:
    """Token ids padded into a batch of tensors.

    Args:
        ids_list: token ids per document.
        pad_id: the padding token.
        device: where the tensors go.
        side: ``"right"`` or ``"left"`` padding.

    Returns:
        ``{"input_ids": (n, width), "attention_mask": (n, width)}``.
    """
    n = len(ids_list)
    width = max(len(x) for x in ids_list)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, x in enumerate(ids_list):
        if side == "right":
            input_ids[i, : len(x)] = x
            mask[i, : len(x)] = 1
        else:
            input_ids[i, width - len(x) :] = x
            mask[i, width - len(x) :] = 1
    return {"input_ids": torch.from_numpy(input_ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}


def pick_device(requested: str = "auto") -> torch.device:
    """The device to run on: CUDA, then Apple MPS, then CPU; or what the user asked for.

    Args:
        requested: ``"auto"`` or a torch device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Returns:
        A ``torch.device``.

    Raises:
        FineclassError: naming ``device`` when the name is not a device, or asks for CUDA where there is none.
    """
    if requested and requested != "auto":
        try:
            dev = torch.device(requested)
        except RuntimeError:
            raise FineclassError(
                f"`device` {requested!r} is not a device name (use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps').", "device"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise FineclassError("`device` asks for CUDA but no CUDA GPU is visible. Use device='auto'.", "device")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def inference_dtype(device: torch.device):
    """The dtype a model is loaded in for prediction.

    Args:
        device: where it runs.

    Returns:
        bf16 on GPUs that support it, fp32 elsewhere.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def quiet_transformers():
    """Keep transformers' load reports out of a user's console; our own messages say what matters."""
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:
        pass
    logging.getLogger("peft").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*were not initialized from the model checkpoint.*")


def check_no_pickle(folder: str | Path, allow_pickle: bool = False, argument: str = "path") -> None:
    """Refuse a model folder whose weights are pickle files (they can run code when loaded).

    Args:
        folder: the model's folder (a hub id is not checked).
        allow_pickle: let them through.
        argument: the argument that named the folder, for the error.

    Raises:
        FineclassError: naming ``argument`` when the folder holds pickle files and ``allow_pickle`` is false.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    pickles = [p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file()]
    if pickles and not allow_pickle:
        raise FineclassError(
            f"`{argument}`: the folder {str(folder)!r} holds pickle files ({', '.join(sorted(pickles)[:5])}), which "
            f"can run code when loaded. fineclass loads safetensors only; convert the weights, or pass "
            f"allow_pickle=True if you trust their source.",
            argument,
        )


def check_complete(missing: list, folder: str | Path, argument: str = "path") -> None:
    """Refuse a model whose weight files lack tensors its architecture needs (they would start random).

    Args:
        missing: the names of the tensors the architecture needs and the files lack (``from_pretrained``'s
            ``missing_keys``, or :func:`missing_adapter_tensors`).
        folder: the weights' folder, for the error.
        argument: the argument that named the model.

    Raises:
        FineclassError: naming ``argument`` and the first missing tensors when any is missing.
    """
    missing = sorted(missing)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FineclassError(
            f"`{argument}`: the weights in {str(folder)!r} lack {len(missing)} tensor(s) the model needs ({shown}); "
            f"loading would give them random values. The folder is incomplete: save the model again.",
            argument,
        )


def missing_adapter_tensors(module: Any, adapter_folder: str | Path) -> list[str]:
    """The tensors a loaded LoRA model needs from its adapter file (LoRA matrices, saved heads) that the file lacks.

    peft itself warns only about missing LoRA matrices; a missing classification head would silently keep the
    base model's random one. This compares every tensor peft would save for the adapter with the file's.

    Args:
        module: the loaded ``PeftModel``.
        adapter_folder: the folder holding ``adapter_model.safetensors``.

    Returns:
        The missing names, sorted (empty when the file is complete).
    """
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    expected = set(get_peft_model_state_dict(module).keys())
    weights = Path(adapter_folder) / "adapter_model.safetensors"
    if not weights.is_file():
        return sorted(expected)
    with safe_open(str(weights), "pt") as f:
        present = set(f.keys())
    return sorted(expected - present)


def load_adapter(base: Any, adapter_folder: str | Path) -> Any:
    """Apply a saved LoRA adapter to its base model, refusing an adapter file that lacks a tensor it needs.

    Args:
        base: the loaded base model.
        adapter_folder: the folder ``save_pretrained`` wrote (``adapter_config.json``, ``adapter_model.safetensors``).

    Returns:
        The ``PeftModel``.

    Raises:
        FineclassError: naming ``path`` when a LoRA matrix or a saved module (the classification head) is missing.
    """
    from peft import PeftModel

    try:
        module = PeftModel.from_pretrained(base, str(adapter_folder))
    except KeyError as e:  # peft's own reaction to a missing saved module (modules_to_save)
        check_complete([str(e.args[0]) if e.args else "a saved module"], adapter_folder)
        raise
    check_complete(missing_adapter_tensors(module, adapter_folder), adapter_folder)
    return module


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """A model's parameters.

    Args:
        module: the model.

    Returns:
        ``(total, trainable)``.
    """
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def is_decoder(config) -> bool:
    """Whether a model is a causal (decoder) language model, by its config.

    Args:
        config: a transformers config.

    Returns:
        True for decoders (``is_decoder``, a ``*CausalLM`` architecture, or a known decoder family).
    """
    archs = getattr(config, "architectures", None) or []
    return (
        bool(getattr(config, "is_decoder", False))
        or any("CausalLM" in a for a in archs)
        or getattr(config, "model_type", "")
        in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "phi3")
    )


def resolve_finetune(finetune: str, module, device: torch.device) -> str:
    """The fine-tuning mode a run uses.

    Args:
        finetune: ``"auto"``, ``"full"``, ``"lora"`` or ``"qlora"``.
        module: the freshly loaded model.
        device: where it trains.

    Returns:
        ``"auto"`` resolved (LoRA for decoders and models above 300M parameters, else full); QLoRA becomes LoRA,
        with a warning, off CUDA.
    """
    if finetune == "qlora" and device.type != "cuda":
        warn_user(
            "QLoRA's 4-bit base needs a CUDA GPU and bitsandbytes; on this device fineclass trains "
            "the same LoRA adapter on the unquantized model instead."
        )
        return "lora"
    if finetune != "auto":
        return finetune
    total, _ = count_parameters(module)
    return "lora" if (is_decoder(module.config) or total > 300e6) else "full"


def quantization_config():
    """The paper's 4-bit NF4 base for QLoRA (CUDA and bitsandbytes only).

    Returns:
        A transformers ``BitsAndBytesConfig``.

    Raises:
        FineclassError: naming ``finetune`` when bitsandbytes is missing.
    """
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FineclassError(
            "finetune='qlora' needs bitsandbytes on a CUDA machine: pip install bitsandbytes", "finetune"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
