"""Checked-in snapshots of the stages' state, one set per snapshot format, and what a
stage restored from them must still do (`tests/test_snapshot_fixtures.py`).

A recovery directory outlives the code that wrote it: a class that gains, loses or renames
a field must still read every format written before. These files are that promise kept
on record: `python -m tests.snapshot_fixtures` writes the set of the current formats
(:func:`set_name`: the snapshot format and every stage's record version; once per set,
a set already written is never rewritten), and the test reads every set with the current
code.

The state is the pure stages' after the first half of a small simulated network: the
sequencer and every site (as the flow freezes them: records without configuration), a
care shard fed the sites' verdicts, dispatch fed the actions, a region shard fed the
sites' incidents and the frontier step fed the sequencer's progress (the last two from
the set ``v2`` on), and what a care gate would hold: the care messages of the last batch
(from the set ``v2-care3-frontier3-region3-sequence3-site3`` on). The set ``v1`` holds
the stages' objects pickled whole (snapshot format 1), what the flow wrote before
records.
"""

from __future__ import annotations

import sys
from pathlib import Path

from forewarn.dataflows import records
from forewarn.dataflows.care import CareShard, care_order
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.flow import _decode_batch
from forewarn.dataflows.frontier import FrontierTracker
from forewarn.dataflows.held import Held
from forewarn.dataflows.messages import Frontier, Progress
from forewarn.dataflows.region import REGION_KEYS, RegionShard
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.dataflows.site import SiteCorrelator
from forewarn.rules.rulebook import load_rulebook
from forewarn.safe_pickle import SNAPSHOT_FORMAT
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
        self.region = RegionShard()
        self.frontier = FrontierTracker(region_keys=REGION_KEYS)
        self.incidents: list = []
        self.actions: list = []
        self.grouped: list = []  # the region shard's outputs
        self.frontiers: list = []  # the frontier step's
        self.gated: list = []  # care messages of the last batch with any: what a gate holds

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
        incidents: list = []
        for site_id, msgs in routes.sites.items():
            site = self.sites.get(site_id)
            if site is None:
                site = self.sites[site_id] = SiteCorrelator(site_id, self.book)
            for tag, item in site.handle_batch(msgs):
                (to_care if tag == "care" else incidents).append(item)
        self.incidents += incidents
        if to_care:
            self.gated = to_care
        out = self.care.handle_batch(sorted(to_care, key=care_order), self.book)
        self.actions += self.dispatch.take(out + [Frontier(float("inf"))], self.book)
        mark = self.seq.watermark if self.seq.watermark is not None else float("-inf")
        corr = self.book.correlation
        self.grouped += self.region.take(incidents + [Frontier(mark)], corr.storm_sites,
                                         corr.storm_window_s)
        self.frontiers += self.frontier.due()
        self.frontier.take(Progress(0, mark, tuple(routes.sites)))
        self.frontier.end_epoch()

    def snapshots(self) -> dict[str, bytes]:
        snaps = {"sequencer": records.freeze_sequence(self.seq),
                 "care": records.freeze_care(self.care, []),
                 "dispatch": records.freeze_dispatch(self.dispatch),
                 "region": records.freeze_region(self.region),
                 "frontier": records.freeze_frontier(self.frontier),
                 "gate": records.freeze_gate(Held(self.gated))}
        for site_id, site in sorted(self.sites.items()):
            snaps[f"site-{site_id}"] = records.freeze_site(site, [])
        return snaps

    def restore(self, where: Path) -> None:
        """Take the stages' state from a set's files (as the flow resumes them)."""
        def blob(name: str) -> bytes:
            return (where / f"{name}.bin").read_bytes()

        self.seq = records.thaw_sequence(blob("sequencer"), lateness_s=0.0, tick_s=15.0,
                                         book=self.book)
        self.care, held = records.thaw_care(blob("care"))
        assert held == []
        self.dispatch = records.thaw_dispatch(blob("dispatch"))
        if (where / "region.bin").exists():
            self.region = records.thaw_region(blob("region"))
            self.frontier = records.thaw_frontier(
                blob("frontier"), FrontierTracker(region_keys=REGION_KEYS))
        if (where / "gate.bin").exists():
            self.gated = records.thaw_gate(blob("gate")).messages()
        for f in sorted(where.glob("site-*.bin")):
            site, pending, merge = records.thaw_site(f.read_bytes(), book=self.book)
            assert site is not None and pending == [] and merge is None
            self.sites[site.site_id] = site


def set_name() -> str:
    """The set of the current formats: ``v<snapshot format>``, then ``-<stage><version>``
    for each stage whose record moved past its first version as a record (2)."""
    moved = "".join(f"-{stage}{f.version}" for stage, f in sorted(records.FORMATS.items())
                    if f.version > 2)
    return f"v{SNAPSHOT_FORMAT}{moved}"


def write(root: Path = ROOT) -> Path:
    """Write the current formats' set, unless it exists; in a set that exists, only the
    files of stages newer than it (a stage's first record: its set is the current one)."""
    where = root / set_name()
    stream = lines()
    stages = Stages()
    stages.feed(stream[:len(stream) // 2])
    new = {name: blob for name, blob in stages.snapshots().items()
           if not (where / f"{name}.bin").exists()}
    if where.exists() and (not new or any(n.startswith("site-") for n in new)):
        raise SystemExit(f"{where} exists: a format's snapshots are never rewritten (a new "
                         "set comes with a new version of a stage's record)")
    where.mkdir(parents=True, exist_ok=True)
    for name, blob in new.items():
        (where / f"{name}.bin").write_bytes(blob)
    return where


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
