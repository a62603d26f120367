"""The README's first screen stays true: CI runs exactly its test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command():
    demo, tests = _commands((ROOT / "README.md").read_text())[:2]
    assert "batchlr run" in demo and "pytest" in tests
    assert tests in _commands((ROOT / ".ci" / "run").read_text())
