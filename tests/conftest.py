"""For every test: the subpackages' old top-level names do not import.

From the repository root ``import dataflows`` would find the folder and load a second copy
of each module (its own classes and metrics; a ``monkeypatch`` of the copy no flow runs),
while an installed Forewarn has only ``forewarn.dataflows`` (docs/layout.md).
"""

from __future__ import annotations

import importlib.abc
import sys

OLD_NAMES = frozenset({"dataflows", "connectors", "rules", "simulator"})


class OldNames(importlib.abc.MetaPathFinder):
    """Refuses ``dataflows``, ``forewarn.dataflows.flow``, ... saying what the name is now."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in OLD_NAMES:
            raise ModuleNotFoundError(
                f"{fullname} is forewarn.{fullname}: import it by that name (docs/layout.md)",
                name=fullname)
        return None


if not any(isinstance(f, OldNames) for f in sys.meta_path):
    sys.meta_path.insert(0, OldNames())
