"""The tools hold the habits: lint and types are part of the test command that CI runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the dev extra (pip install -e '.[dev]')")
    return [found]


def test_ruff_finds_nothing() -> None:
    """ruff, configured in pyproject.toml, reports nothing over the code and the tests."""
    result = subprocess.run([*_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    """mypy, configured in pyproject.toml, reports nothing over the packages."""
    result = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_configuration_is_valid() -> None:
    """The commented example in config/ passes `parkwatch check-config`."""
    from config.cli import main  # noqa: PLC0415 - the CLI is what is under test

    assert main(["check-config", str(REPO / "config" / "parkwatch.example.toml")]) == 0
