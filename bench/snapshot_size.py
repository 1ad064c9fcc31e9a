"""Recovery snapshot bytes per subscriber: the stages' records against their objects
pickled whole (snapshot format 1, what the stages wrote before records).

The pure stages (``tests/snapshot_fixtures.Stages``: one shard, one worker) take the
first half of a simulated network, then each subscriber's care state is snapshotted as
one care key (as a store of earlier versions kept it with ``--recovery``; a care bucket
holds ~122 subscribers at 1 M, its record their sum) and the sequencer
(one key: every subscriber's row) once. Figures: bytes per care key and bytes of the
sequencer's snapshot per subscriber it has heard, in both formats.

    .venv/bin/python -m bench.snapshot_size
"""

from __future__ import annotations

import argparse

from forewarn.dataflows import records
from forewarn.dataflows.care import CareShard
from forewarn.safe_pickle import dump_state
from forewarn.simulator import ScenarioConfig, simulate
from tests.snapshot_fixtures import SCENARIO, Stages

SCENARIOS = (SCENARIO, ScenarioConfig(seed=5, sites=30, hours=6.0, subscribers_per_cell=20))


def measure(cfg: ScenarioConfig) -> dict:
    lines = simulate(cfg).lines
    stages = Stages()
    stages.feed(lines[:len(lines) // 2])
    care_record = care_object = 0
    for sid, care in stages.care.known().items():
        one = CareShard()
        one.restore({sid: care})
        care_record += len(records.freeze_care(one, []))
        care_object += len(dump_state(one))
    keys, heard = len(stages.care), len(stages.seq.heard)
    return {"sites": cfg.sites, "hours": cfg.hours, "care_keys": keys, "heard": heard,
            "care_record": care_record / keys, "care_object": care_object / keys,
            "seq_record": len(records.freeze_sequence(stages.seq)) / heard,
            "seq_object": len(dump_state(stages.seq)) / heard}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    print("| scenario | care keys | care B/key record (object) | sequencer B/subscriber "
          "record (object) |")
    print("|---|---|---|---|")
    for cfg in SCENARIOS:
        m = measure(cfg)
        print(f"| {m['sites']} sites, {m['hours']:g} h | {m['care_keys']} | "
              f"{m['care_record']:.1f} ({m['care_object']:.1f}) | "
              f"{m['seq_record']:.1f} ({m['seq_object']:.1f}) |")


if __name__ == "__main__":
    main()
