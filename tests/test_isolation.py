"""The README's two commands in one clone: the tests run after the demo neither meet its study nor add files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from batchlr.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_suite_ignores_a_demo_study_in_the_working_directory(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    # What the demo leaves: ./batchlr.db holding digits-convnet, made with the default ranges.
    demo = ["run", "--storage", f"sqlite:///{clone / 'batchlr.db'}", "--folds", "2", "--epochs", "1", "--device", "cpu", "--n-trials", "1"]
    assert CliRunner().invoke(main, demo).exit_code == 0
    before = sorted(clone.rglob("*"))
    # The tests that run `batchlr run` without --storage, from that directory, as the README does.
    selected = "2000 or nosuchset"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_bad_input.py"), "-k", selected]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(command, cwd=clone, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "deselected" in result.stdout
    assert sorted(clone.rglob("*")) == before
