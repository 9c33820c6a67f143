"""Deploying a generative classifier: LoRA merged for faster prediction, or exported for vLLM or llama.cpp."""

from __future__ import annotations

from pathlib import Path

from ..._fs import atomic_folder, check_replaceable
from ...errors import FineclassError
from ...manifest import write_json_atomic
from ...models import resolve
from ..base import quiet_transformers
from .generation import generative_plan
from .loading import load_causal_lm
from .precision import DTYPES, set_precision


def merge_for_inference(classifier, *, dtype: str | None = None, activations: str | None = None):
    """Merge the LoRA adapter into the weights, and optionally cast them to ``dtype``, for faster prediction.

    Merging gives the same model without the adapter's extra matrix products. ``dtype="bfloat16"`` is about 2-3x
    faster on GPUs and on CPUs with AMX (recent Xeons), at bf16 precision (probabilities agree to about 1e-2).
    ``dtype="bfloat16", activations="float32"`` stores the weights of the linear layers in bf16 and keeps everything
    else in fp32 (see ``LowPrecisionLinear``): on an AMX CPU about 2x faster than fp32, and with far less rounding
    than bf16 throughout, whose rounding makes scoring and ``generate()`` flip more near-ties. ``save()`` afterwards
    writes the full merged weights and the precision, and ``fineclass.load()`` restores both.

    Args:
        classifier: a fitted generative Classifier; changed in place.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``, or None (keep the precision).
        activations: ``"float32"`` with a lower ``dtype``: only the linear layers' weights take ``dtype``.

    Returns:
        ``classifier``.

    Raises:
        FineclassError: naming ``classifier`` when it is not generative or its base is 4-bit, ``dtype`` or
            ``activations`` when they are not one of the values above.

    Example:
        >>> fineclass.merge_for_inference(clf, dtype="bfloat16", activations="float32")  # doctest: +SKIP
    """
    generative_plan(classifier)
    if dtype is not None and dtype not in DTYPES:
        raise FineclassError(f"`dtype` must be one of {', '.join(DTYPES)}; got {dtype!r}.", "dtype")
    if activations is not None:
        if activations != "float32":
            raise FineclassError(
                f"`activations` must be 'float32' (or None: the same as `dtype`); got {activations!r}.", "activations"
            )
        if dtype is None:
            raise FineclassError(
                "`activations` needs `dtype`, the precision of the weights: for example "
                "dtype='bfloat16', activations='float32'.",
                "activations",
            )
    module = classifier.module_
    info = getattr(module, "_fineclass_generative", None)
    zero_shot = getattr(module, "_fineclass_zero_shot", False)
    precision = getattr(module, "_fineclass_precision", None)
    if hasattr(module, "peft_config"):
        if getattr(module, "is_loaded_in_4bit", False):
            raise FineclassError(
                "this classifier's base is quantized to 4 bits (QLoRA); merge it with "
                "export_merged() instead, which loads the base unquantized.",
                "classifier",
            )
        module = module.merge_and_unload()
    if dtype is not None:
        precision = {"dtype": dtype, "activations": activations}
    module = set_precision(module, precision)
    module._fineclass_generative = info
    if zero_shot:
        module._fineclass_zero_shot = True
    classifier.module_ = module.eval()
    return classifier


def export_merged(classifier, path: str | Path, *, overwrite: bool = False) -> str:
    """Write the model with its LoRA adapter merged, ready for vLLM or llama.cpp's conversion script.

    The folder holds safetensors weights, the tokenizer (with its chat template), labels.json and
    fineclass_prompt.json (the prompt and the answer format). A model so served answers in the paper's form,
    which ``fineclass.propose`` reads (``protocol.parse_answer``).

    Args:
        classifier: a fitted generative Classifier (trained, loaded, or zero-shot).
        path: the folder to write (atomically).
        overwrite: replace a folder that holds an exported model.

    Returns:
        The folder's path.

    Raises:
        FineclassError: naming ``classifier`` when it is not generative, or ``path`` when the folder is not
            empty and ``overwrite`` is false (or holds files that are not an exported model).

    Example:
        >>> export_merged(fineclass.load("models/gen"), "exported/gen")  # doctest: +SKIP
    """
    plan = generative_plan(classifier)
    path = Path(path)
    check_replaceable(path, overwrite, "fineclass_prompt.json", "an exported fineclass model")
    module = classifier.module_
    base_path = classifier.manifest_.get("model_resolved") or resolve(classifier.model)
    quiet_transformers()
    if hasattr(module, "peft_config"):
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        base = load_causal_lm(base_path, "auto", classifier.trust_remote_code)
        state = get_peft_model_state_dict(module)
        fresh = get_peft_model(base, module.peft_config["default"])
        set_peft_model_state_dict(fresh, {k: v.detach().cpu() for k, v in state.items()})
        merged = fresh.merge_and_unload()
    elif getattr(module, "_fineclass_zero_shot", False):
        merged = load_causal_lm(base_path, "auto", classifier.trust_remote_code)
    else:
        merged = module
    with atomic_folder(path) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        classifier.tokenizer_.save_pretrained(str(tmp))
        classifier.spec_.save(tmp / "labels.json")
        example = plan.template.replace("{text}", "<the document>")
        write_json_atomic(
            tmp / "fineclass_prompt.json",
            {
                "template": plan.template,
                "chat_template": plan.chat,
                "kind": classifier.spec_.kind,
                "answer_form": {
                    "single": "Answer = [code]",
                    "multi": "Answer = [code, code]",
                    "dimlevel": "JSON dictionary {dimension: level} of the dimensions present",
                }[classifier.spec_.kind],
                "example_user_message": example,
                "max_length_tokens": classifier.manifest_["config"]["max_length"],
                "source_model": str(classifier.model),
                "thresholds": classifier.thresholds_,
            },
        )
    return str(path)
