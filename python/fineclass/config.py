"""TrainConfig: every setting of a fine-tuning run in one validated dataclass.

Settings left at ``None`` take the method's default (the head method's, or the paper's for the generative
method: LoRA r=64, learning rate 2e-4, warmup 0.03, max grad norm 0.3); the resolved values are recorded in
the model's manifest. R passes a named list through ``TrainConfig.from_dict``.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

from ._checks import whole_number
from .errors import FineclassError

FINETUNE = ("auto", "full", "lora", "qlora")
MAX_LENGTH_CAP = 256  # the most tokens max_length="auto" chooses (pass a number for longer documents)


@dataclass
class TrainConfig:
    """Every setting of a fine-tuning run.

    Settings left at ``None`` take the method's default (see the module's description); the resolved values are
    recorded in the model's manifest. Whole numbers may come as doubles (R passes them so).

    Attributes:
        epochs: passes over the training documents (at least 1).
        batch_size: documents per batch.
        learning_rate: the peak learning rate of AdamW (linear warm-up, then linear decay); None: the method's
            default (head: 5e-5 full, 2e-4 LoRA; generative: 2e-4).
        weight_decay: AdamW's weight decay.
        warmup_ratio: the share of steps spent warming up, in [0, 1); None: the method's default.
        max_grad_norm: the gradient norm clipped to; None: the method's default.
        max_length: the most tokens of a document the model reads, in training and prediction (longer ones are
            cut, and flagged ``truncated``): a whole number, or ``"auto"`` (the default): the 95th percentile of
            the training documents' token lengths, rounded up to a multiple of 8, at least 16 and at most
            ``MAX_LENGTH_CAP`` (256) and the model's own limit. The chosen length, the length percentiles and the
            documents cut are reported when training and recorded in the manifest.
        finetune: ``"auto"`` (LoRA for decoders and models above 300M parameters, else full), ``"full"``,
            ``"lora"`` or ``"qlora"`` (LoRA on a 4-bit base; CUDA and bitsandbytes only).
        lora_r: LoRA's rank; None: the method's default (head 16, generative 64).
        lora_alpha: LoRA's scaling; None: the method's default (head 32, generative 16).
        lora_dropout: dropout on LoRA's input.
        lora_targets: the modules LoRA adapts (names or one name); None: every linear layer.
        class_weights: ``"balanced"`` (weights against class imbalance in the loss) or None.
        validation: the share of training documents held out for early stopping and threshold tuning, in
            [0, 0.9); 0 trains on every document and keeps the last epoch; None: the method's default (a tenth; a
            fifth for ``ensemble``, which trains again on every document once the epoch is chosen).
        early_stopping: stop after this many epochs without a better validation loss; None: never.
        threshold: the presence thresholds of the multi-label shapes: ``"tune"`` (best mean Jaccard on held-out
            documents: one threshold, then one per class where the class occurs often enough there, and whether
            each document gets at least one label) or a number in (0, 1) (one threshold for every class).
        seed: the seed of every random step (split, shuffling, dropout, initialisation).
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        gradient_accumulation: batches whose gradients are summed before each optimiser step.
        checkpoint_dir: a folder for a checkpoint after each epoch (the newest two are kept), so that a run
            killed part-way can continue with ``resume=True``.
        prompt: the generative method's prompt template, with the slot ``{text}`` (and optionally
            ``{codebook}``, ``{labels}``, ``{levels}``); None: the default prompt.
        extra: method-specific settings: ``allow_pickle`` (accept pickle weights), ``scoring`` (generative:
            ``"prefix"`` or ``"full"``), ``absent_blocks`` (generative: absent classes trained per document),
            ``head_learning_rate``, ``min_steps``, ``min_validation`` and ``pair_weight`` (description: the
            class vectors' learning rate, the fewest optimiser steps however few the documents, the smallest
            validation split of single-label data that is kept for choosing the epoch, 100, and the weight of
            SetFit's pair objective beside the cross-entropy for single-label data, 0.3), ``C``, ``folds`` and
            ``middle_layer`` (codebook, and the ensemble's codebook member: the inverse L2 penalty of its logistic
            regressions, the folds of its out-of-fold thresholds, and whether they read the encoder's middle layer
            beside its last, True),
            ``description_weight`` and ``description_members`` (ensemble: the description share of the mixture,
            from 0 to 1, chosen on validation when unset, and other than 1/2 only where that choice carries over
            between two halves of the validation split; how many description members are trained side by side
            and averaged, 2); the ensemble's description members use ``pair_weight`` only where it is set.
            ``refit`` (any method trained by epochs; True or False): after the validation split has chosen the
            epoch (and the ensemble's weight and the decision rule), train the trainable parts again from their
            start on every document, up to that epoch, so that the validation documents are learnt from too; it
            takes about twice the training time. The ensemble's default (``Method.refits``); off for the others.

    Example:
        >>> TrainConfig(epochs=2.0, finetune="lora").epochs
        2
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: Optional[float] = None
    weight_decay: float = 0.01
    warmup_ratio: Optional[float] = None
    max_grad_norm: Optional[float] = None
    max_length: Any = "auto"
    finetune: str = "auto"
    lora_r: Optional[int] = None
    lora_alpha: Optional[int] = None
    lora_dropout: float = 0.05
    lora_targets: Optional[list] = None
    class_weights: Optional[str] = "balanced"
    validation: Optional[float] = None
    early_stopping: Optional[int] = 2
    threshold: Any = "tune"
    seed: int = 0
    device: str = "auto"
    gradient_accumulation: int = 1
    checkpoint_dir: Optional[str] = None
    prompt: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "gradient_accumulation"):
            setattr(self, name, whole_number(getattr(self, name), name))
        if self.max_length != "auto":
            self.max_length = whole_number(self.max_length, "max_length", hint=" (tokens per document, or 'auto')")
        for name in ("lora_r", "lora_alpha", "early_stopping"):
            setattr(self, name, whole_number(getattr(self, name), name, allow_none=True))
        self.seed = whole_number(self.seed, "seed", minimum=None)
        if self.learning_rate is not None and not (0 < float(self.learning_rate) < 1):
            raise FineclassError(
                f"`learning_rate` must be between 0 and 1; got {self.learning_rate!r}.", "learning_rate"
            )
        if self.warmup_ratio is not None and not (0 <= float(self.warmup_ratio) < 1):
            raise FineclassError(f"`warmup_ratio` must be in [0, 1); got {self.warmup_ratio!r}.", "warmup_ratio")
        if self.validation is not None and not (
            isinstance(self.validation, numbers.Real)
            and not isinstance(self.validation, bool)
            and 0 <= float(self.validation) < 0.9
        ):
            raise FineclassError(
                f"`validation` is the share of training rows held out for early stopping and "
                f"must be in [0, 0.9); got {self.validation!r}.",
                "validation",
            )
        if self.finetune not in FINETUNE:
            raise FineclassError(f"`finetune` must be one of {', '.join(FINETUNE)}; got {self.finetune!r}.", "finetune")
        if self.class_weights not in (None, "balanced", "none"):
            raise FineclassError(
                f"`class_weights` must be 'balanced' or None; got {self.class_weights!r}.", "class_weights"
            )
        if self.class_weights == "none":
            self.class_weights = None
        if not (self.threshold == "tune" or isinstance(self.threshold, (int, float))):
            raise FineclassError(
                f"`threshold` must be 'tune' or a number in (0, 1); got {self.threshold!r}.", "threshold"
            )
        if self.prompt is not None and "{text}" not in self.prompt:
            raise FineclassError("`prompt` must contain the slot {text}, where each document goes.", "prompt")
        if isinstance(self.lora_targets, str):
            self.lora_targets = [self.lora_targets]

    def to_dict(self) -> dict:
        """Every setting as plain data (what a saved model's manifest records).

        Returns:
            ``{setting: value}``.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainConfig":
        """A TrainConfig from a dict of settings (R passes a named list).

        Args:
            d: ``{setting: value}``; a TrainConfig is returned as it is; None gives the defaults.

        Returns:
            The TrainConfig.

        Raises:
            FineclassError: naming ``config`` for an unknown setting, or the setting whose value is invalid.
        """
        if d is None:
            return cls()
        if isinstance(d, TrainConfig):
            return d
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FineclassError(
                f"`config` has unknown settings: {', '.join(unknown)}. Known settings: {', '.join(sorted(known))}.",
                "config",
            )
        return cls(**dict(d))

    @classmethod
    def with_settings(cls, config: Any, settings: Mapping[str, Any]) -> "TrainConfig":
        """``config`` with settings given as keywords laid over it (``train(..., epochs=2)``).

        Args:
            config: a TrainConfig, a dict of settings or None (the defaults).
            settings: ``{setting: value}``, each checked like ``config``'s.

        Returns:
            The TrainConfig.

        Raises:
            FineclassError: naming ``config`` for an unknown setting in either, or the setting whose value is
                invalid.
        """
        merged = cls.from_dict(config).to_dict()
        if settings:
            cls.from_dict(settings)  # names an unknown or invalid setting
            merged.update(settings)
        return cls.from_dict(merged)

    def resolved(self, **defaults) -> "TrainConfig":
        """A copy with the ``None`` settings filled in from a method's defaults.

        Args:
            **defaults: ``{setting: value}`` (``Method.defaults``).

        Returns:
            A new TrainConfig.
        """
        values = self.to_dict()
        for k, v in defaults.items():
            if values.get(k) is None:
                values[k] = v
        return TrainConfig(**values)
