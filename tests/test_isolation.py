"""The README's two commands in one clone: the tests run after the demo neither meet its study nor add files; and
no command imports a module lying in the working directory in place of the real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from batchlr.cli import main

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[1]


def test_the_suite_ignores_a_demo_study_in_the_working_directory(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    # What the demo leaves: ./batchlr.db holding digits-convnet, made with the default ranges.
    demo = [
        "run",
        "--storage",
        f"sqlite:///{clone / 'batchlr.db'}",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--n-trials",
        "1",
    ]
    assert CliRunner().invoke(main, demo).exit_code == 0
    before = sorted(clone.rglob("*"))
    # The tests that run `batchlr run` without --storage, from that directory, as the README does.
    selected = "2000 or nosuchset"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n0",  # a handful of tests: starting xdist workers would cost more than they save
        str(ROOT / "tests" / "test_bad_input.py"),
        "-k",
        selected,
    ]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        command, cwd=clone, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "deselected" in result.stdout
    assert sorted(clone.rglob("*")) == before


PLANTED = ("torch", "yaml", "tomli_w", "plotly", "matplotlib", "numpy", "optuna", "sqlalchemy")


def test_modules_lying_in_the_working_directory_are_never_imported(tmp_path):
    """A torch.py or yaml.py where batchlr runs must not replace the real module: run by the
    `batchlr` script or `python -m batchlr`, no command imports it (only a --model module is
    imported from there)."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    built = CliRunner().invoke(
        main,
        [
            "run",
            "--storage",
            storage,
            "--study",
            "d",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--n-trials",
            "1",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert built.exit_code == 0, built.output
    assert (
        CliRunner()
        .invoke(
            main,
            [
                "refit",
                "d",
                "--storage",
                storage,
                "--output",
                str(tmp_path / "m.pt"),
                "--device",
                "cpu",
            ],
        )
        .exit_code
        == 0
    )
    work = tmp_path / "work"
    work.mkdir()
    for name in PLANTED:
        (work / f"{name}.py").write_text(
            f"import pathlib\npathlib.Path({str(tmp_path / name)!r} + '.imported').touch()\n"
        )
    Image.new("L", (8, 8), 128).save(work / "x.png")
    script = [str(Path(sys.executable).with_name("batchlr"))]
    commands = [
        [*script, "predict", str(tmp_path / "m.pt"), "x.png"],
        [*script, "evaluate", str(tmp_path / "m.pt"), "--dataset", "digits"],
        [*script, "show", "d", "--storage", storage],
        [*script, "export", "d", "--storage", storage, "--output", "best.yaml"],
        [*script, "report", "d", "--storage", storage, "--output", "report"],
        [sys.executable, "-m", "batchlr", "show", "d", "--storage", storage, "--as-config"],
    ]
    for command in commands:
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (command, result.stderr)
        assert not list(tmp_path.glob("*.imported")), (
            command,
            [path.name for path in tmp_path.glob("*.imported")],
        )
