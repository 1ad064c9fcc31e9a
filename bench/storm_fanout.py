"""The flow's throughput during a storm's fan-out against the calm hours of the same run.

One full-density storm scenario (``forewarn simulate --subscribers-per-cell 400 --storm``)
runs through the whole flow in-process (one worker, the default rulebook, outputs
discarded), and the wall time at which the flow reads each 1,000th input line is noted.
Input lines are grouped by their own stream time:

* **calm**: from an hour after the start (the flow warmed up) to the storm's start;
* **fan-out**: the storm's first 30 min (every site of it fails within 15 min; each
  site's hold-down fans its incident out to everyone on it, thousands of verdicts, care
  decisions and paced notices a minute);
* **after**: the rest of the run (the storm's hours: walk-ins, escalations, restorations).

The wall time is that of the flow's *reading*: with one worker Bytewax reads a batch,
then runs the steps it feeds, so reading follows processing within an epoch.

Events/s in each span, and their ratio (fan-out / calm), from one run: the machine's load
shifts both alike.

    .venv/bin/python -m bench.storm_fanout                    # ~2 min
    .venv/bin/python -m bench.storm_fanout --sites 60 --hours 4 --seed 21
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from bytewax.testing import run_main

from bench.flow_throughput import DiscardSink
from forewarn.codec import parse_time
from forewarn.connectors.files import LinesSource
from forewarn.connectors.kafka_source import stream_time
from forewarn.dataflows.flow import FlowConfig, Outputs, build_flow
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import tune_gc
from forewarn.simulator import ScenarioConfig, simulate

EVERY = 1000  # lines between two wall-clock notes
FANOUT_S = 1800.0


class Noted:
    """The input lines, noting ``(line index, wall time)`` every :data:`EVERY` lines as
    the flow reads them (a source reads lazily: reading is the flow's progress)."""

    def __init__(self, lines: Sequence[bytes]):
        self.lines = lines
        self.notes: list[tuple[int, float]] = []

    def __iter__(self) -> Iterator[bytes]:
        notes, clock = self.notes, time.perf_counter
        for i, line in enumerate(self.lines):
            if i % EVERY == 0:
                notes.append((i, clock()))
            yield line
        notes.append((len(self.lines), clock()))


def rate(notes: list[tuple[int, float]], times: list[float], lo: float, hi: float
         ) -> tuple[int, float]:
    """Lines whose stream time is in ``[lo, hi)`` (between notes) and the wall time the
    flow took over them."""
    n, wall = 0, 0.0
    for (i, t0), (j, t1) in zip(notes, notes[1:], strict=False):
        inside = sum(1 for k in range(i, j) if lo <= times[k] < hi)
        if inside:
            n += inside
            wall += (t1 - t0) * inside / (j - i)
    return n, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--sites", type=int, default=60)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--subscribers-per-cell", type=int, default=400)
    ap.add_argument("--storm", default="north")
    args = ap.parse_args()
    sc = simulate(ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                                 subscribers_per_cell=args.subscribers_per_cell,
                                 storm_region=args.storm, start="2026-11-23T06:00:00Z"))
    storm = next(t for t in sc.truth if t.get("type") == "truth_storm")
    start = parse_time(storm["start_time"])
    times, last = [], float("-inf")
    for line in sc.lines:  # a line without a time of its own (topology) goes with the last
        t = stream_time(line)
        last = t if t is not None and t != float("-inf") else last
        times.append(last)
    first = min(t for t in times if t != float("-inf"))
    noted = Noted(sc.lines)
    sinks = {k: DiscardSink() for k in ("actions", "incidents", "dead_letters")}
    flow = build_flow(LinesSource(noted), Outputs(**sinks),  # type: ignore[arg-type]
                      FlowConfig(book=load_rulebook()))
    tune_gc()
    t0 = time.perf_counter()
    run_main(flow)
    total = time.perf_counter() - t0
    gc.collect()
    calm_n, calm_s = rate(noted.notes, times, first + 3600.0, start)
    fan_n, fan_s = rate(noted.notes, times, start, start + FANOUT_S)
    rest_n, rest_s = rate(noted.notes, times, start + FANOUT_S, float("inf"))
    calm, fan = calm_n / calm_s, fan_n / fan_s
    print(f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"scenario: seed {args.seed}, {args.sites} sites, {args.hours:g} h, "
          f"{args.subscribers_per_cell}/cell, storm {args.storm} ({len(storm['site_ids'])} "
          f"sites); {len(sc.lines):,} lines in {total:.1f} s ({len(sc.lines) / total:,.0f} ev/s); "
          f"{sinks['actions'].count[0]:,} actions")
    print(f"calm     {calm_n:>9,} lines in {calm_s:6.1f} s: {calm:9,.0f} ev/s")
    print(f"fan-out  {fan_n:>9,} lines in {fan_s:6.1f} s: {fan:9,.0f} ev/s")
    print(f"after    {rest_n:>9,} lines in {rest_s:6.1f} s: {rest_n / rest_s:9,.0f} ev/s "
          "(the storm's hours: walk-ins, escalations, restorations)")
    print(f"ratio fan-out / calm: {fan / calm:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
