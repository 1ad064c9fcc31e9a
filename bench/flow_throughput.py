"""Throughput of the whole Forewarn flow against a Bytewax pass-through.

Both flows read the SAME simulator lines from memory (``forewarn.connectors.files.LinesSource``,
batches of ``forewarn.connectors.files.BATCH``), run on one worker (``run_main``) with the same
epoch interval, and write to a discarding sink, so neither input nor output I/O is
measured. They run alternately, ``--repeat`` times each; the best and the median are reported.

* **forewarn**: ``forewarn.dataflows.flow.build_flow`` with the default rulebook — decode,
  sequencer, site correlation, subscriber care, metrics, encoding of the outputs.
* **pass-through**: decode with ``orjson.loads``, key by ``subscriber_id`` (else
  ``cell_id``, else the type), a per-key counter in a ``StatefulBatchLogic``, output.
  ``--passthrough-map`` adds the same with ``stateful_map`` (which deep-copies every
  touched key's state at each epoch end).

Wall and CPU time (``thread_time``: the worker runs in this thread) are both recorded;
the machine may be shared, CPU time is the steadier of the two.

``--stages`` then runs the flow's own stage logic (decode, ``SequenceLogic``,
``SiteLogic``, ``CareLogic``, encode) outside Bytewax over the same batches: what the flow
takes beyond that is Bytewax and the operator shims. ``--profile`` runs the Forewarn flow
once more under cProfile, then pyinstrument if installed (``.venv/bin/pip install
pyinstrument``; bench only), and prints the hot spots with their share of the run.

    .venv/bin/python -m bench.flow_throughput                       # ~1 min
    .venv/bin/python -m bench.flow_throughput --stages --profile    # ~2 min
    .venv/bin/python -m bench.flow_throughput --sites 100 --hours 3 --repeat 5
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from forewarn.connectors.files import BATCH, LinesSource
from forewarn.dataflows.flow import FlowConfig, Outputs, build_flow
from forewarn.rules.rulebook import NEARBY_TRIGGERS, load_rulebook
from forewarn.runner import tune_gc
from forewarn.simulator import ScenarioConfig, simulate

# ---- a sink that discards ------------------------------------------------------------


class _Discard(StatelessSinkPartition):
    def __init__(self, counter: list[int]):
        self._counter = counter

    def write_batch(self, items: list) -> None:
        self._counter[0] += len(items)  # the only work: count, for a sanity check


class DiscardSink(DynamicSink):
    """Drops everything; counts the items it was given."""

    def __init__(self) -> None:
        self.count = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Discard:
        return _Discard(self.count)


# ---- the two flows ---------------------------------------------------------------------


def forewarn_flow(lines: Sequence[bytes], nearby: bool = True, anchors: bool = True
                  ) -> tuple[Dataflow, dict[str, DiscardSink]]:
    """The flow with the default rulebook; ``nearby=False``: without its rules on people
    around an outage (walk-ins), so nothing is followed (:mod:`forewarn.dataflows.nearby`);
    ``anchors=False``: without learning anchor places (:mod:`forewarn.dataflows.anchors`)."""
    sinks = {k: DiscardSink() for k in ("actions", "incidents", "dead_letters")}
    book = load_rulebook()
    if not nearby:
        book = replace(book, rules=tuple(r for r in book.rules if r.at not in NEARBY_TRIGGERS),
                       _by_id={})
    flow = build_flow(LinesSource(lines), Outputs(**sinks), FlowConfig(book=book,
                                                                       anchors=anchors))
    return flow, sinks


def _loads(item: tuple[str, bytes]) -> dict | None:
    try:
        obj = orjson.loads(item[1])
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _key(obj: dict) -> str:
    return str(obj.get("subscriber_id") or obj.get("cell_id") or obj.get("type"))


class CountLogic(StatefulBatchLogic):
    """Trivial per-key state: how many events the key has seen."""

    def __init__(self, resume: int | None):
        self.n = resume or 0

    def on_batch(self, values: list) -> tuple[list, bool]:
        self.n += len(values)
        return [self.n], False

    def snapshot(self) -> int:
        return self.n


def _count(state: int | None, _obj: dict) -> tuple[int, int]:
    state = (state or 0) + 1
    return state, state


def passthrough_flow(lines: Sequence[bytes], use_map: bool = False
                     ) -> tuple[Dataflow, dict[str, DiscardSink]]:
    sink = DiscardSink()
    flow = Dataflow("passthrough_map" if use_map else "passthrough")
    raw = op.input("input", flow, LinesSource(lines))
    objs = op.filter_map("decode", raw, _loads)
    keyed = op.key_on("key", objs, _key)
    if use_map:
        counted = op.stateful_map("count", keyed, _count)
    else:
        counted = op.stateful_batch("count", keyed, CountLogic)
    op.output("out", counted, sink)
    return flow, {"out": sink}


# ---- measuring -------------------------------------------------------------------------


def run_once(build: Callable[[], tuple[Dataflow, dict[str, DiscardSink]]], epoch_s: float
             ) -> tuple[float, float, dict[str, int]]:
    """Wall and CPU seconds of one run. ``run_main`` runs the worker in this thread, so
    ``thread_time`` is its CPU time: steadier than wall time on a shared machine."""
    flow, sinks = build()
    gc.collect()
    w0, c0 = time.perf_counter(), time.thread_time()
    run_main(flow, epoch_interval=timedelta(seconds=epoch_s))
    cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
    return wall, cpu, {k: s.count[0] for k, s in sinks.items()}


def _fmt_rate(n: int, secs: float) -> str:
    return f"{n / secs / 1000:6.1f} k ev/s ({secs:5.2f} s)"


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def profile_forewarn(lines: Sequence[bytes], epoch_s: float, top: int) -> None:
    """cProfile the Forewarn flow; print top functions by own time and by stage."""
    flow, _ = forewarn_flow(lines)
    prof = cProfile.Profile()
    gc.collect()
    t0 = time.perf_counter()
    prof.enable()
    run_main(flow, epoch_interval=timedelta(seconds=epoch_s))
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # sum of own times = profiled wall
    print(f"\n== cProfile: Forewarn flow, {len(lines)} events, {wall:.2f} s under the "
          f"profiler (sum of own times {total:.2f} s)")
    print("   own time in run_main = Bytewax's Rust engine (scheduling, exchange, keying,"
          " snapshots)")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    print(f"{'own %':>6} {'cum %':>6} {'calls':>10}  function")
    for (path, line, name), (_cc, ncalls, tt, ct, _callers) in rows[:top]:
        where = _short(path)
        print(f"{100 * tt / total:6.1f} {100 * ct / total:6.1f} {ncalls:10d}  "
              f"{where}:{line}({name})")
    # Own time grouped by source file: which part of the code base the time is in.
    by_file: dict[str, float] = {}
    for (path, _line, _name), v in stats.stats.items():
        where = "built-ins (Bytewax run_main, orjson, dict/list ops)" if path == "~" \
            else _short(path)
        by_file[where] = by_file.get(where, 0.0) + v[2]
    print("\n   own time by file")
    for path, tt in sorted(by_file.items(), key=lambda kv: kv[1], reverse=True)[:15]:
        print(f"{100 * tt / total:6.1f}  {path}")

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\n(pyinstrument not installed: `.venv/bin/pip install pyinstrument` for a "
              "sampling profile)")
        return
    flow, _ = forewarn_flow(lines)
    gc.collect()
    sampler = Profiler(interval=0.001)
    sampler.start()
    bytewax_engine(flow, epoch_s)
    sampler.stop()
    root = sampler.last_session.root_frame()
    own: dict[str, float] = {}
    incl: dict[str, float] = {}

    def walk(frame: Any, active: frozenset[str]) -> None:
        name = f"{_short(frame.file_path or '')}:{frame.line_no}({frame.function})"
        if not frame.is_synthetic:
            own[name] = own.get(name, 0.0) + frame.total_self_time
            if name not in active:
                incl[name] = incl.get(name, 0.0) + frame.time
                active = active | {name}
        for child in frame.children:
            walk(child, active)

    walk(root, frozenset())
    total = root.time
    print(f"\n== pyinstrument (sampling every 1 ms; its call hook also slows the run): "
          f"{total:.2f} s")
    print(f"{'own %':>6}  function (own time)")
    for name, t in sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        print(f"{100 * t / total:6.1f}  {name}")
    print(f"\n{'incl %':>6}  function (inclusive time; stage entry points and their callees)")
    for name, t in sorted(incl.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        if t / total < 0.01:
            break
        print(f"{100 * t / total:6.1f}  {name}")


def sequencer_cost(lines: Sequence[bytes], repeat: int) -> tuple[list[float], list[float]]:
    """CPU seconds of the sequencer alone over ``lines`` (decoded once, in batches as the
    flow takes them), with and without learning anchor places, alternated ``repeat``
    times: the stage anchors add to, without Bytewax's noise around it."""
    from forewarn.dataflows import flow as fl
    from forewarn.dataflows.sequencer import Routes, Sequencer

    batches = [fl._decode_batch([("bench", line) for line in lines[i:i + BATCH]])
               for i in range(0, len(lines), BATCH)]
    book = load_rulebook()
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeat):
        for learn in (True, False):
            seq = Sequencer()
            seq.configure(book)
            seq.learn_anchors(learn)
            gc.collect()
            t = time.thread_time()
            for batch in batches:
                for _, items in batch:
                    seq.take_batch([items], Routes())
            seq.finish(Routes())
            times[learn].append(time.thread_time() - t)
    return times[True], times[False]


def stage_costs(lines: Sequence[bytes]) -> dict[str, float]:
    """Run the flow's own stage logic outside Bytewax, timing each stage.

    Drives the same ``StatefulBatchLogic`` classes the flow uses (``SequenceLogic``,
    ``SiteLogic``, ``CareLogic``) and its decode step in plain Python loops, batch by
    batch (``BATCH`` lines), grouping by key as Bytewax does. What the flow takes beyond the
    sum is Bytewax (scheduling, exchange, keying) and the per-item operator shims
    (map / filter_map / key_on / branch callbacks).
    """
    from forewarn.codec import encode
    from forewarn.dataflows import flow as fl
    from forewarn.model import Action, DeadLetter, Incident

    cfg = FlowConfig(book=load_rulebook())
    care_keys = fl.CareKeys(cfg)
    seq = fl.SequenceLogic(cfg, None)
    sites: dict[str, Any] = {}
    cares: dict[str, Any] = {}
    cost: dict[str, float] = dict.fromkeys(("decode", "sequence", "site", "care", "encode"), 0.0)
    pc = time.thread_time

    def deliver(routed: list, eof: bool = False) -> None:
        site_in: dict[str, list] = {}
        care_in: dict[str, list] = {}
        outs: list = []
        for stage, bundle in routed:  # the sequencer's output: one bundle per stage
            if stage == "site":
                for key, value in bundle:
                    site_in.setdefault(key, []).append(value)
            elif stage == "care":
                for key, msgs in bundle:
                    care_in.setdefault(key, []).append(msgs)
            else:
                outs += bundle
        t = pc()
        for key, values in site_in.items():
            logic = sites.get(key) or sites.setdefault(key, fl.SiteLogic(cfg, None))
            emitted, _ = logic.on_batch(values)
            logic.snapshot()  # one epoch per batch: releases the outbox on the next one
            for kind, msg in emitted:
                if kind == "care":
                    care_in.setdefault(cfg.care_key(msg.subscriber_id), []).append([msg])
                else:
                    outs.append(msg)
        if eof:
            for logic in sites.values():
                for kind, msg in logic.on_eof()[0]:
                    if kind == "care":
                        care_in.setdefault(cfg.care_key(msg.subscriber_id), []).append([msg])
                    else:
                        outs.append(msg)
        cost["site"] += pc() - t
        t = pc()
        for key, values in care_in.items():
            logic = cares.get(key) or cares.setdefault(key, care_keys(None))
            emitted, drop = logic.on_batch(values)
            outs += emitted
            if drop:
                del cares[key]
        cost["care"] += pc() - t
        t = pc()
        for x in outs:
            if isinstance(x, Action | Incident | DeadLetter):
                encode(x)
        cost["encode"] += pc() - t

    gc.collect()
    t_all = pc()
    for i in range(0, len(lines), BATCH):
        t = pc()
        decoded = fl._decode_batch([("simulator", line) for line in lines[i:i + BATCH]])
        cost["decode"] += pc() - t
        t = pc()
        routed, _ = seq.on_batch([batch for _, batch in decoded])
        cost["sequence"] += pc() - t
        deliver(routed)
    t = pc()
    routed, _ = seq.on_eof()
    cost["sequence"] += pc() - t
    deliver(routed, eof=True)
    cost["total"] = pc() - t_all
    return cost


def bytewax_engine(flow: Dataflow, epoch_s: float) -> None:
    """``run_main``: a sampler charges time in Bytewax's Rust code (outside any Python
    callback) to this frame."""
    run_main(flow, epoch_interval=timedelta(seconds=epoch_s))


_ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def _short(path: str) -> str:
    for marker in ("site-packages/", _ROOT, "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def main(argv: Sequence[str] | None = None) -> None:
    tune_gc()  # as `forewarn run` does; both flows run in this process
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--subscribers-per-cell", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each flow (alternated)")
    ap.add_argument("--epoch-s", type=float, default=0.25,
                    help="epoch interval (both flows; 0.25 s is what forewarn run/demo use)")
    ap.add_argument("--passthrough-map", action="store_true",
                    help="also time a stateful_map pass-through")
    ap.add_argument("--without-nearby", action="store_true",
                    help="also time the flow without walk-in rules (the cost of following "
                         "who is around an outage)")
    ap.add_argument("--without-anchors", action="store_true",
                    help="also time the flow without learning anchor places (their cost)")
    ap.add_argument("--stages", action="store_true",
                    help="then time the flow's stage logic outside Bytewax")
    ap.add_argument("--profile", action="store_true", help="then profile the Forewarn flow")
    ap.add_argument("--top", type=int, default=30, help="rows of the profile")
    args = ap.parse_args(argv)

    print(f"python {platform.python_version()}, bytewax {version('bytewax')}, "
          f"orjson {orjson.__version__}, 1 worker, epoch {args.epoch_s:g} s")
    cfg = ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                         subscribers_per_cell=args.subscribers_per_cell)
    t0 = time.perf_counter()
    lines = simulate(cfg).lines
    n = len(lines)
    print(f"scenario: seed={cfg.seed} sites={cfg.sites} hours={cfg.hours:g} "
          f"subscribers_per_cell={cfg.subscribers_per_cell:g}: {n} events, "
          f"{sum(map(len, lines)) / n:.0f} B/event avg "
          f"(simulated in {time.perf_counter() - t0:.1f} s)")

    flows: dict[str, Callable[[], tuple[Dataflow, dict[str, DiscardSink]]]] = {
        "passthrough": lambda: passthrough_flow(lines),
        "forewarn": lambda: forewarn_flow(lines),
    }
    if args.passthrough_map:
        flows["passthrough_map"] = lambda: passthrough_flow(lines, use_map=True)
    if args.without_nearby:
        flows["forewarn_no_nearby"] = lambda: forewarn_flow(lines, nearby=False)
    if args.without_anchors:
        flows["forewarn_no_anchors"] = lambda: forewarn_flow(lines, anchors=False)
    wall: dict[str, list[float]] = {k: [] for k in flows}
    cpu: dict[str, list[float]] = {k: [] for k in flows}
    counts: dict[str, dict[str, int]] = {}
    seen_counts: dict[str, set[str]] = {k: set() for k in flows}
    print(f"load average before: {loadavg()}")
    for i in range(args.repeat):
        for name, build in flows.items():
            w, c, counts[name] = run_once(build, args.epoch_s)
            seen_counts[name].add(repr(sorted(counts[name].items())))
            wall[name].append(w)
            cpu[name].append(c)
            print(f"  run {i + 1}/{args.repeat} {name:16s} wall {_fmt_rate(n, w)}   "
                  f"cpu {_fmt_rate(n, c)}")
    print(f"load average after: {loadavg()}")
    print(f"outputs: forewarn {counts['forewarn']}, passthrough {counts['passthrough']}")
    if len(seen_counts["forewarn"]) > 1:
        print(f"NOTE: the Forewarn flow's output counts differed between runs of the same "
              f"input: {sorted(seen_counts['forewarn'])}")

    print(f"\n{'flow':16s} {'wall best':>24s} {'wall median':>24s} {'cpu best':>24s}")
    for name in flows:
        print(f"{name:16s} {_fmt_rate(n, min(wall[name])):>24s} "
              f"{_fmt_rate(n, statistics.median(wall[name])):>24s} "
              f"{_fmt_rate(n, min(cpu[name])):>24s}")
    best = min(wall["passthrough"]) / min(wall["forewarn"])
    med = statistics.median(wall["passthrough"]) / statistics.median(wall["forewarn"])
    by_cpu = min(cpu["passthrough"]) / min(cpu["forewarn"])
    print(f"\nratio forewarn / passthrough: wall best {best:.2f}x, wall median {med:.2f}x, "
          f"cpu best {by_cpu:.2f}x (goal >= 0.5x: {'met' if best >= 0.5 else 'NOT met'})")

    def cost(what: str, without: str) -> None:
        wb = min(wall["forewarn"]) / min(wall[without])
        wm = statistics.median(wall["forewarn"]) / statistics.median(wall[without])
        cb = min(cpu["forewarn"]) / min(cpu[without])
        print(f"cost of {what}: the flow takes {wb:.3f}x (wall best), {wm:.3f}x "
              f"(wall median), {cb:.3f}x (cpu best) the time of the flow without them")

    if args.without_nearby:
        cost("walk-in rules", "forewarn_no_nearby")

    if args.without_anchors:
        cost("anchor places", "forewarn_no_anchors")
        with_a, without_a = sequencer_cost(lines, max(args.repeat, 3))
        print(f"the sequencer alone: {min(with_a):.2f} s CPU with anchors, "
              f"{min(without_a):.2f} s without (best of {len(with_a)}): "
              f"{min(with_a) / min(without_a):.3f}x; "
              f"+{(min(with_a) - min(without_a)) / len(lines) * 1e6:.2f} us per event")

    if args.stages:
        try:
            cost = stage_costs(lines)
        except Exception as exc:  # noqa: BLE001 - the flow's internals moved: say so, go on
            print(f"\nstage breakdown unavailable ({type(exc).__name__}: {exc})")
        else:
            flow_s = min(cpu["forewarn"])
            loop = cost.pop("total")
            stages = sum(cost.values())
            print(f"\n== the flow's stage logic outside Bytewax (same batches of {BATCH}), CPU "
                  f"time, vs the flow's best {flow_s:.2f} s CPU")
            for k, v in cost.items():
                print(f"  {k:26s} {v:6.2f} s {100 * v / flow_s:5.1f} %  "
                      f"{1e6 * v / n:5.2f} us/event")
            print(f"  {'all stages':26s} {stages:6.2f} s {100 * stages / flow_s:5.1f} %  "
                  f"{1e6 * stages / n:5.2f} us/event")
            rest = flow_s - stages
            print(f"  {'Bytewax + operator shims':26s} {rest:6.2f} s {100 * rest / flow_s:5.1f} %  "
                  f"{1e6 * rest / n:5.2f} us/event (= flow - stages; the whole pass-through: "
                  f"{1e6 * min(cpu['passthrough']) / n:.2f} us/event)")
            print(f"  (this loop's own routing/grouping by key, Bytewax's job in the flow: "
                  f"{loop - stages:.2f} s)")

    if args.profile:
        profile_forewarn(lines, args.epoch_s, args.top)


if __name__ == "__main__":
    main()
