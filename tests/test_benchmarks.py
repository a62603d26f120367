"""Every script under benchmarks/ runs, with tiny settings, so that none rots unnoticed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def row_labels(stdout: str) -> list[str]:
    """The first column of the table rows, the lines that start with a number."""
    return [
        line.split()[0]
        for line in stdout.splitlines()
        if line.split() and line.split()[0].isdigit()
    ]


# Tiny arguments for each script and what its output must show; a new script without an
# entry fails the coverage test below.
BENCHMARKS: dict[str, tuple[list[str], Callable[[str], bool]]] = {
    "search.py": (
        [
            "--dataset",
            "digits",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--n-trials",
            "3",
            "--seeds",
            "1",
            "--strategies",
            "baseline,default",
        ],
        lambda stdout: (
            [line.split()[0] for line in stdout.splitlines()[2:]] == ["baseline", "default"]
        ),
    ),
    "load.py": (
        [
            "--workers",
            "2",
            "--trials",
            "8",
            "--trial-seconds",
            "0.1",
            "--heartbeat",
            "1",
            "--proxy",
        ],
        # two workers through the proxy, one killed: nothing failed, lost or left behind
        lambda stdout: (
            stdout.splitlines()[1].split()[:2] == ["2", "proxy"]
            and stdout.splitlines()[1].split()[5:9] == ["0", "1", "0", "0"]
        ),
    ),
    "throughput.py": (
        [
            "--dataset",
            "digits",
            "--device",
            "cpu",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--batch-sizes",
            "64,128",
        ],
        lambda stdout: row_labels(stdout) == ["64", "128"],
    ),
    # 200 images is the fewest whose training folds still hold the run's batch of 64.
    "memory.py": (
        ["--sizes", "200,400"],
        lambda stdout: (
            row_labels(stdout) == ["200", "400"] and "KiB per image" in stdout.splitlines()[-1]
        ),
    ),
    "peer.py": (
        [
            "--synthetic",
            "300",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--repeats",
            "1",
            "--device",
            "cpu",
            "--precisions",
            "fp32,bf16",
            "--nchw",
        ],
        lambda stdout: (
            [line.split()[0] for line in stdout.splitlines()[2:-1]] == ["(a)", "(b)"] + ["(c)"] * 6
            and "x" in stdout.splitlines()[3]
        ),
    ),
    "precision.py": (
        ["--trials", "1", "--data", "digits", "--epochs", "1", "--seeds", "0", "--device", "cpu"],
        lambda stdout: (
            [line.split()[0] for line in stdout.splitlines()[2:]] == ["digits", "digits,"]
        ),
    ),
    "ridge.py": (
        [
            "--dataset",
            "digits",
            "--device",
            "cpu",
            "--optimizers",
            "adam",
            "--batch-size",
            "16:64",
            "--batch-points",
            "3",
            "--lr-points",
            "4",
            "--epochs",
            "2",
            "--held-out",
            "24",
            "--dense-points",
            "3",
        ],
        lambda stdout: (
            stdout.splitlines()[2].split()[0] == "adam"
            and "predicted (+), measured (*)" in stdout
            and "o" in stdout.split("measured (*)")[1]
        ),
    ),
    "recipe.py": (
        [
            "--dataset",
            "digits",
            "--device",
            "cpu",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--trials",
            "2",
            "--batch-size",
            "32:64",
        ],
        lambda stdout: [line.split()[0] for line in stdout.splitlines()[2:]] == ["plain", "recipe"],
    ),
}


def test_every_benchmark_has_an_entry():
    assert sorted(path.name for path in (ROOT / "benchmarks").glob("*.py")) == sorted(BENCHMARKS)


@pytest.mark.process
@pytest.mark.parametrize("script", sorted(BENCHMARKS))
def test_benchmark_runs(script):
    arguments, shows_its_table = BENCHMARKS[script]
    command = [sys.executable, str(ROOT / "benchmarks" / script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert shows_its_table(result.stdout), result.stdout
