"""Every checked-in set of stage snapshots (tests/snapshot_fixtures.py) still loads, and
the stages restored from it go on exactly as the stages that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from forewarn.dataflows.flow import _thaw_site
from forewarn.safe_pickle import SNAPSHOT_FORMAT, load_state
from tests.snapshot_fixtures import ROOT, Stages, lines

SETS = sorted(ROOT.glob("v*"))


def test_the_current_format_has_its_set():
    assert ROOT / f"v{SNAPSHOT_FORMAT}" in SETS, (
        "no checked-in snapshots of the current format: run `python -m "
        "tests.snapshot_fixtures` and commit tests/fixtures/snapshots/")


@pytest.mark.parametrize("where", SETS, ids=[p.name for p in SETS])
def test_stages_restored_from_a_set_go_on_as_if_they_never_stopped(where: Path):
    stream = lines()
    half = len(stream) // 2
    straight = Stages()
    straight.feed(stream[:half])
    before = (len(straight.incidents), len(straight.actions))
    straight.feed(stream[half:], end=True)

    restored = Stages()
    restored.seq = load_state((where / "sequencer.bin").read_bytes())
    restored.seq.configure(restored.book)
    restored.care = load_state((where / "care.bin").read_bytes())
    restored.dispatch = load_state((where / "dispatch.bin").read_bytes())
    for f in sorted(where.glob("site-*.bin")):
        site, pending, merge = _thaw_site(f.read_bytes(), restored.book)
        assert site is not None and pending == [] and merge is None
        restored.sites[site.site_id] = site
    assert restored.sites, "the set must hold sites for this test to mean anything"
    restored.feed(stream[half:], end=True)

    assert restored.incidents == straight.incidents[before[0]:]
    assert restored.actions == straight.actions[before[1]:]
    assert len(restored.actions) > 10, "the second half must act for this to mean anything"
