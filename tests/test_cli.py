"""The `fineclass` command: every subcommand is in cli.COMMANDS, registered, and answers --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fineclass.cli import COMMANDS, main

ALL = [
    "train",
    "classify",
    "evaluate",
    "curve",
    "zero-shot",
    "generate",
    "export",
    "propose",
    "review",
    "sample",
    "estimate",
    "serve",
    "demo",
    "doctor",
]
PACKAGE = Path(__file__).resolve().parent.parent / "python" / "fineclass"


def test_the_table_holds_every_subcommand():
    assert [c.name for c in COMMANDS] == ALL
    review = next(c for c in COMMANDS if c.name == "review")
    assert [c.name for c in review.subcommands] == ["export", "import", "assemble"]


@pytest.mark.parametrize(
    "argv", [[name] for name in ALL if name != "review"] + [["review", sub] for sub in ("export", "import", "assemble")]
)
def test_every_subcommand_answers_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert f"usage: fineclass {' '.join(argv)}" in capsys.readouterr().out


def test_no_module_registers_commands_of_its_own():
    """One table: no module but cli.py adds subcommands (zero-shot, generate and export once lived in a function
    that nothing called)."""
    found = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "cli.py" and ("add_parser(" in p.read_text() or "def add_cli" in p.read_text())
    ]
    assert found == []


def test_the_command_reaches_the_generative_subcommands():
    for name in ("zero-shot", "generate", "export"):
        out = subprocess.run(
            [sys.executable, "-m", "fineclass.cli", name, "--help"], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and f"usage: fineclass {name}" in out.stdout, out.stderr


def test_python_dash_m_fineclass_is_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "fineclass", "doctor", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "python" in json.loads(out.stdout)
    bad = subprocess.run(
        [sys.executable, "-m", "fineclass", "no-such-command"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "usage: fineclass" in bad.stderr
