"""Lint, format and types are part of the suite, so the README's test command (and CI) checks them.

Rule set and strictness, and why, are in pyproject.toml ([tool.ruff], [tool.mypy]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "src", "tests", "scripts"],
        ["ruff", "format", "--check", "src", "tests", "scripts"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tree_is_clean(cmd):
    exe = BIN / cmd[0]
    assert exe.exists(), f"{exe} missing: run ./scripts/setup (ruff and mypy are in the test extras)"
    r = subprocess.run([str(exe), *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
