"""Checked-in snapshots of the stages' state, one set per snapshot format, and what a
stage restored from them must still do (`tests/test_snapshot_fixtures.py`).

A recovery directory outlives the code that wrote it: a class that gains, loses or renames
a field must still read every format written before. These files are that promise kept
on record: `python -m tests.snapshot_fixtures` writes the set of the current
:data:`forewarn.safe_pickle.SNAPSHOT_FORMAT` (once per format; a set already written is
never rewritten), and the test reads every set with today's code.

The state is the pure stages' after the first half of a small simulated network: the
sequencer and every site (as the flow freezes them, without their rulebook), a care
shard fed the sites' verdicts, and dispatch fed the actions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from forewarn.dataflows.care import CareShard, care_order
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.flow import _decode_batch, _freeze_site
from forewarn.dataflows.messages import Frontier
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.dataflows.site import SiteCorrelator
from forewarn.rules.rulebook import load_rulebook
from forewarn.safe_pickle import SNAPSHOT_FORMAT, dump_state
from forewarn.simulator import ScenarioConfig, simulate

ROOT = Path(__file__).parent / "fixtures" / "snapshots"
SCENARIO = ScenarioConfig(seed=3, sites=8, hours=3.0, subscribers_per_cell=6)
BATCH = 500


def lines() -> list[bytes]:
    return simulate(SCENARIO).lines


class Stages:
    """The pure stages wired as the flow wires them, one shard, one worker."""

    def __init__(self) -> None:
        self.book = load_rulebook()
        self.seq = Sequencer()
        self.seq.configure(self.book)
        self.sites: dict[str, SiteCorrelator] = {}
        self.care = CareShard()
        self.dispatch = Dispatcher()
        self.incidents: list = []
        self.actions: list = []

    def feed(self, part: list[bytes], end: bool = False) -> None:
        for i in range(0, len(part), BATCH):
            routes = Routes()
            decoded = _decode_batch([("f", line) for line in part[i:i + BATCH]])
            if decoded:
                self.seq.take_batch([decoded[0][1]], routes)
            if end and i + BATCH >= len(part):
                self.seq.finish(routes)
            self._route(routes)

    def _route(self, routes: Routes) -> None:
        to_care = [m for box in routes.cares.values() for m in box]
        for site_id, msgs in routes.sites.items():
            site = self.sites.get(site_id)
            if site is None:
                site = self.sites[site_id] = SiteCorrelator(site_id, self.book)
            for tag, item in site.handle_batch(msgs):
                (to_care if tag == "care" else self.incidents).append(item)
        out = self.care.handle_batch(sorted(to_care, key=care_order), self.book)
        self.actions += self.dispatch.take(out + [Frontier(float("inf"))], self.book)

    def snapshots(self) -> dict[str, bytes]:
        snaps = {"sequencer": dump_state(self.seq), "care": dump_state(self.care),
                 "dispatch": dump_state(self.dispatch)}
        for site_id, site in sorted(self.sites.items()):
            snaps[f"site-{site_id}"] = _freeze_site(site, [])
        return snaps


def write(root: Path = ROOT) -> Path:
    """Write the current format's set, unless it exists."""
    where = root / f"v{SNAPSHOT_FORMAT}"
    if where.exists():
        raise SystemExit(f"{where} exists: a format's snapshots are never rewritten (bump "
                         "forewarn.safe_pickle.SNAPSHOT_FORMAT for a new format)")
    stream = lines()
    stages = Stages()
    stages.feed(stream[:len(stream) // 2])
    where.mkdir(parents=True)
    for name, blob in stages.snapshots().items():
        (where / f"{name}.bin").write_bytes(blob)
    return where


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
