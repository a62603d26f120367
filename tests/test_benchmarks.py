"""Every script under benchmarks/ runs, with tiny settings, so that none rots unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tiny arguments for each script; a new script without an entry fails the coverage test below.
TINY_ARGUMENTS = {
    "throughput.py": ["--dataset", "digits", "--device", "cpu", "--folds", "2", "--epochs", "1", "--batch-sizes", "64,128"],
}


def test_every_benchmark_has_tiny_arguments():
    assert sorted(path.name for path in (ROOT / "benchmarks").glob("*.py")) == sorted(TINY_ARGUMENTS)


@pytest.mark.parametrize("script", sorted(TINY_ARGUMENTS))
def test_benchmark_runs(script):
    command = [sys.executable, str(ROOT / "benchmarks" / script), *TINY_ARGUMENTS[script]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line.split() for line in result.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [row[0] for row in table] == ["64", "128"], result.stdout
