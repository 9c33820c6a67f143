"""The layered core (../shared/REDESIGN.md): no import cycle, no upward import, no imported private name, no big file.

Every import of every module of python/fineclass is read from its source (function-local imports included,
``if TYPE_CHECKING:`` blocks excluded). A module imports only from its own layer or below; a name that starts
with ``_`` stays in its module; no module holds more than MAX_SHARE of the package's lines. ``KNOWN`` lists the
violations that the redesign has not removed yet: a new violation fails, and so does an entry that no longer
occurs (delete it as the step that removes it lands).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "python" / "fineclass"
PACKAGE = "fineclass"
MAX_SHARE = 0.12

# bottom to top; a module belongs to the layer of the longest name here that is itself or one of its packages
LAYERS = [
    (
        "L0 utilities",
        ["fineclass.errors", "fineclass._blas", "fineclass.manifest", "fineclass._checks", "fineclass._fs"],
    ),
    ("L1 data model", ["fineclass.tables", "fineclass.labels", "fineclass.sheets"]),
    (
        "L2 task definitions",
        [
            "fineclass.config",
            "fineclass.models",
            "fineclass.prompts",
            "fineclass.protocol",
            "fineclass.client",
            "fineclass.data",
            "fineclass.evaluation",
        ],
    ),
    ("L3 methods", ["fineclass.methods"]),
    ("L4 engines", ["fineclass.scoring", "fineclass.sources", "fineclass.ledger", "fineclass.training"]),
    ("L5 fitted model", ["fineclass.classifier"]),
    (
        "L6 workflows",
        [
            "fineclass.zeroshot",
            "fineclass.infer",
            "fineclass.ray_engine",
            "fineclass.curve",
            "fineclass.crowd",
            "fineclass.serve",
            "fineclass.estimation",
        ],
    ),
    ("L7 front ends", ["fineclass", "fineclass.doctor", "fineclass.demo", "fineclass.rbridge", "fineclass.cli"]),
]

KNOWN: set[str] = set()  # was 35 violations at 37a484b; each step of the redesign deleted its own

# upward references made on purpose, by importlib at first use, to keep an old public path working; they are not
# edges of the import graph (no cycle), and an entry that no longer occurs fails like a stale KNOWN entry
COMPAT = {
    (
        "fineclass.methods.generative",
        "fineclass.zeroshot",
    ): "fineclass.methods.generative.zero_shot_classifier, the path the R package's tests use (issue 15)",
}


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        out[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = f
    return out


def layer_of(module: str) -> int | None:
    best, found = -1, None
    for level, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), level
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    return skip


def imports(mods: dict[str, Path]) -> list[tuple[str, str, str | None]]:
    """(importer, imported module, imported name or None) for every import of a fineclass module."""
    out = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = alias.name
                    while target and target not in mods:
                        target = target.rpartition(".")[0]
                    if target:
                        out.append((name, target, None))
            elif (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("importlib.import_module", "import_module")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = node.args[0].value
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target:
                    out.append((name, target, "<importlib>"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                    continue
                for alias in node.names:
                    if f"{base}.{alias.name}" in mods:  # a submodule, imported by name
                        out.append((name, f"{base}.{alias.name}", None))
                        if base != PACKAGE and base in mods:  # `from .pkg import mod` imports pkg's __init__ too
                            out.append((name, base, None))
                        continue
                    target = base
                    while target and target not in mods:
                        target = target.rpartition(".")[0]
                    out.append((name, target, alias.name))
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def violations() -> set[str]:
    mods = modules()
    found = set()
    for m in mods:
        if layer_of(m) is None:
            found.add(f"unplaced: {m} is in no layer of LAYERS")
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lazy = set()
    for importer, target, name in imports(mods):
        if target == importer:
            continue
        if name == "<importlib>":
            lazy.add((importer, target))
            if (importer, target) in COMPAT:
                continue
            name = None
        edges[importer].add(target)
        a, b = layer_of(importer), layer_of(target)
        if a is not None and b is not None and b > a:
            found.add(f"upward: {importer} ({LAYERS[a][0][:2]}) imports {target} ({LAYERS[b][0][:2]})")
        if name is not None and name.startswith("_") and not name.startswith("__"):
            found.add(f"private: {importer} imports {target}.{name}")
    for importer, target in sorted(set(COMPAT) - lazy):
        found.add(f"stale COMPAT entry: {importer} no longer reaches {target} lazily; delete it")
    for group in _cycles(edges):
        found.add("cycle: " + " <-> ".join(group))
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in mods.items()}
    total = sum(lines.values())
    for m, n in lines.items():
        if n > MAX_SHARE * total:
            found.add(f"big: {m} holds more than {MAX_SHARE:.0%} of the package's lines")
    return found


def test_layers_hold():
    found = violations()
    new = sorted(found - KNOWN)
    gone = sorted(KNOWN - found)
    assert not new, "new violations of the layering (see ../shared/REDESIGN.md):\n  " + "\n  ".join(new)
    assert not gone, "violations listed in KNOWN that no longer occur; delete them:\n  " + "\n  ".join(gone)


def test_the_checks_see_what_they_must(tmp_path, monkeypatch):
    """The scan itself: a cycle, an upward import, a private name and a big file are each found."""
    pkg = tmp_path / PACKAGE
    (pkg / "methods").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "methods" / "__init__.py").write_text("def helper():\n    from ..classifier import Classifier\n")
    (pkg / "classifier.py").write_text(
        "from .methods import helper\nfrom .errors import _secret\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from .cli import main\n"
    )
    (pkg / "errors.py").write_text("_secret = 1\n" + "x = 1\n" * 40)
    (pkg / "cli.py").write_text("")
    (pkg / "labels.py").write_text(
        "def late():\n    import importlib\n    return importlib.import_module('fineclass.cli')\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    found = violations()
    assert "cycle: fineclass.classifier <-> fineclass.methods" in found
    assert any(v.startswith("upward: fineclass.methods (L3) imports fineclass.classifier") for v in found)
    assert "private: fineclass.classifier imports fineclass.errors._secret" in found
    assert any(v.startswith("big: fineclass.errors") for v in found)
    assert "upward: fineclass.labels (L1) imports fineclass.cli (L7)" in found  # importlib counts too
    # the TYPE_CHECKING import is not counted
    assert not any(v.startswith("upward: fineclass.classifier") and "fineclass.cli" in v for v in found)
