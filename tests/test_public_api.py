"""The public API survives the redesign: every root name of `fineclass`, and the deep paths that the R package, the
vignettes and the README use (../shared/REDESIGN.md), import and are what they were."""

from __future__ import annotations

import importlib
import inspect

import pytest

import fineclass

ROOT_NAMES = [
    "FineclassError",
    "LabelSpec",
    "read_codebook",
    "TrainConfig",
    "Classifier",
    "train",
    "load",
    "classify",
    "evaluate",
    "learning_curve",
    "zero_shot",
    "propose",
    "Endpoint",
    "to_long",
    "as_table",
    "read_output",
    "merge_for_inference",
    "generate",
    # the R package's verbs reach the core through these root names (r-package/README.md)
    "zero_shot_classifier",
    "read_table",
    "paired_bootstrap",
    "export_review",
    "import_review",
    "acceptance_report",
    "assemble_training_set",
    "estimate",
    "draw_sample",
    "plan_budget",
    "export",
    "fidelity",
]

# (module, name): the deep paths the R package, the vignettes and the README reach
DEEP_PATHS = [
    ("fineclass.infer", "read_output"),
    ("fineclass.infer", "classify"),
    ("fineclass.methods.generative", "merge_for_inference"),
    ("fineclass.methods.generative", "generate"),
    ("fineclass.methods.generative", "zero_shot_classifier"),  # the R package's tests
    ("fineclass.zeroshot", "zero_shot_classifier"),
    ("fineclass.client", "Endpoint"),
    ("fineclass.rbridge", "call"),
    ("fineclass.rbridge", "table_from_r"),
    ("fineclass.rbridge", "export"),
    ("fineclass.rbridge", "train_config"),
    ("fineclass.rbridge", "describe"),
    ("fineclass.evaluation", "evaluate"),
    ("fineclass.evaluation", "paired_bootstrap"),
    ("fineclass.evaluation", "agreement"),
    ("fineclass.crowd", "acceptance_report"),
    ("fineclass.crowd", "assemble_training_set"),
    ("fineclass.crowd", "export_review"),
    ("fineclass.crowd", "import_review"),
    ("fineclass.classifier", "to_long"),
    ("fineclass.estimation", "estimate"),
    ("fineclass.estimation", "draw_sample"),
    ("fineclass.estimation", "plan_budget"),
    ("fineclass.classifier", "load"),  # the root load(); it reads GGUF exports once fineclass.llamacpp is imported
    ("fineclass.deployment", "export"),
    ("fineclass.deployment", "fidelity"),
]


@pytest.mark.parametrize("name", ROOT_NAMES)
def test_every_root_name_imports(name):
    assert name in fineclass.__all__
    value = getattr(fineclass, name)
    assert callable(value), f"fineclass.{name} is not callable"


def test_root_names_are_exactly_the_listed_ones():
    """A root name that disappears, or appears without being listed here, is a change of the public API."""
    assert sorted(fineclass.__all__) == sorted(ROOT_NAMES)


@pytest.mark.parametrize("module, name", DEEP_PATHS)
def test_deep_paths_import(module, name):
    value = getattr(importlib.import_module(module), name)
    assert callable(value)


def test_root_and_deep_paths_are_the_same_objects():
    assert fineclass.read_output is importlib.import_module("fineclass.infer").read_output
    generative = importlib.import_module("fineclass.methods.generative")
    assert fineclass.merge_for_inference is generative.merge_for_inference
    assert fineclass.generate is generative.generate
    assert fineclass.Endpoint is importlib.import_module("fineclass.client").Endpoint
    assert fineclass.evaluate is importlib.import_module("fineclass.evaluation").evaluate
    deployment = importlib.import_module("fineclass.deployment")
    assert fineclass.load is deployment.load
    assert fineclass.export is deployment.export
    assert fineclass.fidelity is deployment.fidelity


def test_signatures_of_the_main_entry_points():
    """The arguments R and users pass by name are still accepted."""
    assert {
        "data",
        "text",
        "label",
        "id",
        "labels",
        "model",
        "method",
        "codebook",
        "config",
        "kind",
        "levels",
        "spec",
        "trust_remote_code",
        "progress",
        "resume",
    } <= set(inspect.signature(fineclass.train).parameters)
    assert {
        "data",
        "model",
        "output",
        "text",
        "id",
        "batch_tokens",
        "resume",
        "shard",
        "shard_rows",
        "probabilities",
        "progress",
        "device",
        "engine",
    } <= set(inspect.signature(fineclass.classify).parameters)
    assert {"path", "base_model", "device", "trust_remote_code", "allow_pickle"} <= set(
        inspect.signature(fineclass.load).parameters
    )
