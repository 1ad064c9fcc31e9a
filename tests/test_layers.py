"""Layers you can see: the command line and what it runs form one application layer
above the stages and connectors, and nothing below imports it (docs/layout.md). And one
namespace: every module is imported by its ``forewarn.`` name, never by the old top-level
ones (``dataflows``, ``connectors``, ``rules``, ``simulator``).

Read from the source (``ast``), not by importing: every ``import``/``from ... import``
anywhere in a module (functions and ``TYPE_CHECKING`` blocks included) and every
``importlib.import_module("...")``/``__import__("...")`` of a literal name.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The application layer: the ``forewarn`` command line, its commands and what only they
#: drive. Everything else under :data:`PACKAGES` is a lower layer (stages, connectors,
#: rules, simulator, model, codec, metrics, logs, pickling, recovery store, summary).
APPLICATION = {
    "forewarn.cli": "the `forewarn` command line: parses and dispatches to the commands",
    "forewarn.commands": "demo, run, backtest, rules check",
    "forewarn.runner": "runs the flow in-process on files or lines (demo, run, backtest)",
    "forewarn.backtest": "what a rulebook would have done (forewarn backtest)",
    "forewarn.connectors.kafka_run": "forewarn run --bootstrap: the flow wired to Kafka, run "
                                     "until stopped (arguments, signals, recovery directory)",
    "forewarn.connectors.kafka_cli": "forewarn replay",
    "forewarn.connectors.broker_cli": "forewarn broker / topics",
    "forewarn.simulator.cli": "forewarn simulate",
    "forewarn.status_service": "forewarn status serve: the HTTP status service over care.status",
}

#: Where the modules checked live: package -> its folder in the repository (pyproject's
#: ``[tool.setuptools.package-dir]``: ``forewarn.dataflows`` is ``dataflows/``). Every
#: module there that is not application layer is a lower layer.
PACKAGES = {"forewarn": "forewarn",
            **tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
                "package-dir"]}

#: The old top-level packages, now ``forewarn.<name>``.
OLD_NAMES = ("dataflows", "connectors", "rules", "simulator")


def module_name(package: str, folder: Path, path: Path) -> str:
    parts = path.relative_to(folder).with_suffix("").parts
    return ".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])


def all_modules() -> dict[str, Path]:
    """Every module of the installed package, by name (from the real folders; the
    ``forewarn/dataflows`` symlinks are not followed)."""
    return {module_name(pkg, ROOT / folder, p): p
            for pkg, folder in PACKAGES.items() for p in sorted((ROOT / folder).rglob("*.py"))}


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` may import: ``from a.b import c`` gives ``a.b`` and ``a.b.c``
    (``c`` may be a module); relative imports are resolved against ``module``.

    >>> sorted(imported_names("from forewarn import commands as c", "x"))
    ['forewarn', 'forewarn.commands']
    >>> sorted(imported_names("from .kafka_run import run_kafka", "forewarn.connectors.files"))
    ['forewarn.connectors.kafka_run', 'forewarn.connectors.kafka_run.run_kafka']
    >>> sorted(imported_names("importlib.import_module('forewarn.simulator.cli')", "x"))
    ['forewarn.simulator.cli']
    """
    names: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("import_module", "__import__"))):
            names.add(node.args[0].value)
    return names


def application_imports(names: set[str]) -> set[str]:
    return {n for n in names for app in APPLICATION if n == app or n.startswith(app + ".")}


def test_the_application_modules_exist_and_everything_else_is_checked() -> None:
    modules = all_modules()
    assert set(APPLICATION) <= set(modules), set(APPLICATION) - set(modules)
    lower = set(modules) - set(APPLICATION)
    for expected in ("forewarn.dataflows.flow", "forewarn.dataflows.dispatch",
                     "forewarn.connectors.kafka_source", "forewarn.connectors.files",
                     "forewarn.rules.rulebook", "forewarn.simulator.scenario",
                     "forewarn.model", "forewarn.codec", "forewarn.metrics", "forewarn.logs",
                     "forewarn.safe_pickle", "forewarn.recovery_store", "forewarn.summary"):
        assert expected in lower


def test_no_lower_layer_module_imports_the_application_layer() -> None:
    violations = {}
    for name, path in all_modules().items():
        if name in APPLICATION:
            continue
        found = application_imports(
            imported_names(path.read_text(), name, path.name == "__init__.py"))
        if found:
            violations[str(path.relative_to(ROOT))] = sorted(found)
    assert not violations, (
        "lower-layer modules import the application layer (move the code they need down, "
        f"or the entry point up): {violations}")


@pytest.mark.parametrize("source", [
    "from forewarn.commands import cmd_run",
    "import forewarn.connectors.kafka_run",
    "from forewarn import runner",
    "from forewarn.simulator import cli",
    "def f():\n    from forewarn.cli import main\n",
    "import importlib\nimportlib.import_module('forewarn.connectors.broker_cli')",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from forewarn.backtest import x\n",
])
def test_the_check_sees_every_form_of_import(source: str) -> None:
    assert application_imports(imported_names(source, "forewarn.dataflows.example"))


def test_the_check_leaves_lower_layer_imports_alone() -> None:
    source = ("from forewarn import metrics, safe_pickle\nimport forewarn.codec\n"
              "from forewarn.connectors.kafka_config import check_reachable\n"
              "from forewarn.simulator import simulate\n"
              "from forewarn.dataflows.flow import build_flow\n")
    assert not application_imports(imported_names(source, "forewarn.connectors.example"))


def test_the_packages_are_the_ones_the_wheel_installs() -> None:
    assert set(PACKAGES) == {"forewarn", *(f"forewarn.{n}" for n in OLD_NAMES)}
    assert len(all_modules()) > 50


def test_every_import_names_the_forewarn_namespace() -> None:
    """Modules, tests and benchmarks import ``forewarn.dataflows...``: in the repository
    ``dataflows`` alone would import a second copy of each module (other classes, other
    metrics), and an installed Forewarn has no top-level ``dataflows`` at all."""
    files = [*all_modules().values(), *sorted((ROOT / "tests").rglob("*.py")),
             *sorted((ROOT / "bench").rglob("*.py"))]
    old = {}
    for path in files:
        names = imported_names(path.read_text(), "x")
        found = sorted(n for n in names if n.split(".")[0] in OLD_NAMES)
        if found:
            old[str(path.relative_to(ROOT))] = found
    assert not old, f"import these as forewarn.<name> (docs/layout.md): {old}"


@pytest.mark.parametrize("name", ["dataflows", "dataflows.flow", "rules.rulebook",
                                  "connectors.files", "simulator"])
def test_an_old_name_does_not_import(name: str) -> None:
    """(tests/conftest.py) A test that imports or monkeypatches ``dataflows.x`` fails."""
    with pytest.raises(ModuleNotFoundError, match=f"is forewarn.{name.split('.')[0]}"):
        importlib.import_module(name)
