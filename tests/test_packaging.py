"""pyproject.toml declares every distribution that batchlr's code imports."""

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalised(name: str) -> str:
    # PEP 503: Pillow, pillow and PIL's dist name compare equal
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    """The top-level names of the absolute imports in batchlr's source, its own and the standard library's left out."""
    names: set[str] = set()
    for path in (ROOT / "batchlr").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"batchlr", "__future__"}


def test_every_imported_distribution_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [
        *project["dependencies"],
        *(item for extra in project["optional-dependencies"].values() for item in extra),
    ]
    declared = {
        _normalised(re.match(r"[A-Za-z0-9._-]+", requirement).group())
        for requirement in requirements
    }
    providers = metadata.packages_distributions()
    undeclared = {
        module: providers.get(module)
        for module in _imported_modules()
        if not any(
            _normalised(distribution) in declared
            for distribution in providers.get(module, [module])
        )
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
