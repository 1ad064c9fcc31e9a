"""A wheel built from the repository installs one top-level package, ``forewarn``: the
stage, connector, rulebook and simulator folders become ``forewarn.dataflows`` etc.
(pyproject's ``[tool.setuptools.package-dir]``), with the default rulebook as data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    # built from a copy of what the wheel is made of, so the build leaves nothing behind
    # (setuptools writes build/ and *.egg-info next to pyproject.toml)
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("forewarn", *setuptools["package-dir"].values()):
        shutil.copytree(ROOT / folder, src / folder, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "-w", str(out), "--no-deps",
         "--no-build-isolation", "-q", "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("forewarn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"forewarn"}, tops
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).split() == [b"forewarn"]
    for module in ("forewarn/cli.py", "forewarn/dataflows/flow.py",
                   "forewarn/connectors/kafka_run.py", "forewarn/rules/rulebook.py",
                   "forewarn/rules/default/rulebook.yaml", "forewarn/simulator/cli.py"):
        assert module in names, module
    # every module of the repository's packages is in it, under its package's name
    packages = {"forewarn": "forewarn", **setuptools["package-dir"]}
    expected = {f"{package.replace('.', '/')}/{p.relative_to(ROOT / folder)}"
                for package, folder in packages.items()
                for p in (ROOT / folder).rglob("*.py")}  # (rglob: not through symlinks)
    assert sorted(n for n in names if n.endswith(".py")) == sorted(expected)
