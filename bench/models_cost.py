"""Throughput of the whole flow with the models on and off, in one run.

Run: ``.venv/bin/python -m bench.models_cost [--sites N --hours H --subscribers-per-cell N
--repeat K]``. Both variants run the real flow (in memory, discarding sinks) over the
same simulator events, alternating, best of K; the models may cost at most 30%.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from bytewax.testing import run_main

from bench.flow_throughput import DiscardSink
from forewarn.connectors.files import LinesSource
from forewarn.dataflows.flow import FlowConfig, Outputs, build_flow
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import tune_gc
from forewarn.simulator import ScenarioConfig, simulate


def once(lines: list[bytes], models: bool) -> float:
    sinks = Outputs(DiscardSink(), DiscardSink(), DiscardSink())
    flow = build_flow(LinesSource(lines), sinks, FlowConfig(book=load_rulebook(), models=models))
    t0 = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=0.25))
    return len(lines) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--subscribers-per-cell", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    tune_gc()  # as `forewarn run` does
    lines = simulate(ScenarioConfig(sites=args.sites, hours=args.hours,
                                    subscribers_per_cell=args.subscribers_per_cell)).lines
    on, off = [], []
    for _ in range(args.repeat):
        off.append(once(lines, models=False))
        on.append(once(lines, models=True))
    best_on, best_off = max(on), max(off)
    print(f"events: {len(lines):,}")
    print(f"models off: {best_off:,.0f} events/s (runs: {', '.join(f'{x:,.0f}' for x in off)})")
    print(f"models on:  {best_on:,.0f} events/s (runs: {', '.join(f'{x:,.0f}' for x in on)})")
    print(f"cost of the models: {100 * (1 - best_on / best_off):.1f}% of throughput "
          f"(goal: at most 30%)")


if __name__ == "__main__":
    main()
