"""Every checked-in set of stage snapshots (tests/snapshot_fixtures.py) still loads, and
the stages restored from it go on exactly as the stages that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.dataflows.flow import FlowConfig, check_resume
from forewarn.rules.rulebook import load_rulebook
from tests.snapshot_fixtures import ROOT, Stages, lines, set_name

SETS = sorted(ROOT.glob("v*"))


def test_the_current_formats_have_their_set():
    assert ROOT / set_name() in SETS, (
        "no checked-in snapshots of the current formats: run `python -m "
        "tests.snapshot_fixtures` and commit tests/fixtures/snapshots/")


@pytest.mark.parametrize("where", SETS, ids=[p.name for p in SETS])
def test_stages_restored_from_a_set_go_on_as_if_they_never_stopped(where: Path):
    stream = lines()
    half = len(stream) // 2
    straight = Stages()
    straight.feed(stream[:half])
    before = (len(straight.incidents), len(straight.actions), len(straight.grouped),
              len(straight.frontiers))
    straight.feed(stream[half:], end=True)

    restored = Stages()
    restored.restore(where)
    assert restored.sites, "the set must hold sites for this test to mean anything"
    restored.feed(stream[half:], end=True)

    assert restored.incidents == straight.incidents[before[0]:]
    assert restored.actions == straight.actions[before[1]:]
    assert len(restored.actions) > 10, "the second half must act for this to mean anything"
    if (where / "gate.bin").exists():  # (what a care gate holds, with recovery)
        assert restored.gated, "the set's gate must hold messages to mean anything"
    if (where / "region.bin").exists():  # (sets from v2 on)
        assert restored.grouped == straight.grouped[before[2]:]
        assert restored.frontiers == straight.frontiers[before[3]:]
        assert restored.frontiers and restored.grouped


_STAGE_OF = {"sequencer": "sequence", "care": "care", "dispatch": "dispatch",
             "region": "region", "frontier": "frontier", "gate": "gate"}


@pytest.mark.parametrize("where", SETS, ids=[p.name for p in SETS])
def test_every_snapshot_of_a_set_passes_the_check_before_a_resume(where: Path):
    """The check a resumed run makes of every snapshot first (``check_resume``: kinds of
    every field) passes on what every format's stages wrote."""
    cfg = FlowConfig(book=load_rulebook(), durable=True)
    checked = 0
    for f in sorted(where.glob("*.bin")):
        stage = "site" if f.stem.startswith("site-") else _STAGE_OF[f.stem]
        check_resume(cfg, stage, f.read_bytes())
        checked += 1
    assert checked >= 5
