"""Google-style docstrings on the public API: every public function and method says its arguments (``Args:``) and
what it returns (``Returns:`` or ``Yields:``); the package's root functions show an example; every TrainConfig
setting is described. A method that implements an interface inherits the interface's docstring."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import fineclass

# kept by the R side (issue 15), which documents it
EXEMPT_MODULES = {"fineclass.rbridge"}


def _modules():
    names = ["fineclass"] + [m.name for m in pkgutil.walk_packages(fineclass.__path__, "fineclass.")]
    return [importlib.import_module(n) for n in names if n not in EXEMPT_MODULES]


def _problems(name: str, obj, is_property: bool = False) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return [f"{name}: no docstring"]
    if is_property:
        return []
    found = []
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return found
    params = [p for p in sig.parameters if p not in ("self", "cls")]
    if params and "Args:" not in doc:
        found.append(f"{name}: no Args: section ({', '.join(params)})")
    ret = sig.return_annotation
    if ret not in (inspect.Signature.empty, None, "None") and "Returns:" not in doc and "Yields:" not in doc:
        found.append(f"{name}: no Returns: section")
    return found


def _public_api():
    for module in _modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj, False
            elif inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj, False
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, property):
                        yield f"{module.__name__}.{name}.{attr}", value, True
                    elif inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)):
                        yield f"{module.__name__}.{name}.{attr}", getattr(obj, attr), False


def test_every_public_function_has_a_google_docstring():
    problems = []
    for name, obj, is_property in _public_api():
        if inspect.isclass(obj):
            if not inspect.getdoc(obj):
                problems.append(f"{name}: no docstring")
            continue
        problems += _problems(name, obj, is_property)
    assert not problems, f"{len(problems)} docstrings to write:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", [n for n in fineclass.__all__ if inspect.isfunction(getattr(fineclass, n))])
def test_root_functions_show_an_example(name):
    doc = inspect.getdoc(getattr(fineclass, name))
    assert "Example" in doc and "Args:" in doc and "Returns:" in doc, name


def test_every_train_config_setting_is_described():
    doc = inspect.getdoc(fineclass.TrainConfig)
    attributes = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    missing = [f.name for f in dataclasses.fields(fineclass.TrainConfig) if f"\n    {f.name}:" not in "\n" + attributes]
    assert not missing, f"TrainConfig settings without a description: {missing}"


def test_the_check_finds_what_it_must():
    def documented(a: int) -> int:
        """Twice a.

        Args:
            a: a number.

        Returns:
            2a.
        """
        return 2 * a

    def bare(a: int) -> int:
        """Twice a."""
        return 2 * a

    assert _problems("documented", documented) == []
    assert _problems("bare", bare) == ["bare: no Args: section (a)", "bare: no Returns: section"]
