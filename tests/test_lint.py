"""The repository passes ruff with the rules of its ``ruff.toml`` (pyflakes, pycodestyle, bugbear,
no blind except). Skipped where ruff is not installed."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip(f"ruff is not installed for {sys.executable} (pip install ruff)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, 1):  # 2: ruff itself failed (bad configuration, unreadable file)
        pytest.fail(f"ruff could not run (exit {proc.returncode}):\n{proc.stderr or proc.stdout}", pytrace=False)
    if proc.returncode != 0:
        findings = [line for line in proc.stdout.splitlines() if line.strip()] or [proc.stderr.strip()]
        pytest.fail("ruff check found problems (see ruff.toml for the rules):\n" + "\n".join(findings), pytrace=False)
