"""What Bytewax's exchange between processes costs, without Forewarn: a pass-through.

N source partitions (N the largest of ``--processes``, 2 by default) of ``--items`` small
tuples each (a position's shape), keyed to 300 keys, a stateful step that counts them, a
discarding sink; run as 1 process (every partition) and as n processes of one worker
each (the partitions spread over them: with 2, about half the items cross to the other
process). ``items``: one Bytewax item per tuple; ``batched``:
one item per key per source batch (a list), as the Forewarn flow sends a site its
positions; ``local``: one item per tuple, each keyed to a key that Bytewax routes to the
worker reading it (``bench.routing``), so nothing crosses: what two processes give when
only Bytewax's progress messages go between them; ``routed``: one item per tuple, but
the items of a batch bound for another worker cross as one list, keyed to a key of that
worker, and are unpacked there (a stateless-state step), so the counting step's own
exchange is local. Prints wall, CPU (all processes) and CPU per item.

    .venv/bin/python -m bench.bytewax_exchange            # both modes, 1 and 2 processes
    .venv/bin/python -m bench.bytewax_exchange --items 500000 --repeat 3
    .venv/bin/python -m bench.bytewax_exchange --modes local --processes 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

M = [250_000]  # items per partition (--items)
BATCH = 1000
KEYS = 300
#: ``local`` mode: this process's index and the process count (set in the child)
PROC = [0, 1]
PARTS = [2]  # source partitions: the largest process count compared


def _own_keys(worker: int, workers: int) -> list[str]:
    """KEYS / workers keys that Bytewax routes to ``worker`` of ``workers``."""
    from bench.routing import worker_of
    keys = (f"S{i}" for i in range(100 * KEYS))
    return [k for k in keys if worker_of(k, workers) == worker][:KEYS // workers]

class Part(StatefulSourcePartition):
    def __init__(self, i, keys=None):
        self.i, self.n = i, 0
        self.keys = keys

    def next_batch(self):
        if self.n >= M[0]:
            raise StopIteration
        k = self.n
        self.n += BATCH
        if self.keys is not None:  # local: only keys of the worker reading this partition
            ks = self.keys
            return [(ks[(k + j) % len(ks)], (f"SUB{k + j:07d}", "C1", 1.0 * k, None))
                    for j in range(BATCH)]
        return [(f"S{(k + j) % KEYS}", (f"SUB{k + j:07d}", "C1", 1.0 * k, None))
                for j in range(BATCH)]

    def snapshot(self):
        return None


class Src(FixedPartitionedSource):
    def list_parts(self):
        return [f"p{i}" for i in range(PARTS[0])]

    def __init__(self, mode: str = "items"):
        self.mode = mode

    def build_part(self, step_id, name, resume):
        if self.mode == "local":
            return Part(int(name[1:]), _own_keys(PROC[0], PROC[1]))
        return Part(int(name[1:]))


class Nul(StatelessSinkPartition):
    def write_batch(self, items):
        pass


class Sink(DynamicSink):
    def build(self, *a):
        return Nul()


def flow(mode: str) -> Dataflow:
    f = Dataflow("pt")
    s = op.input("in", f, Src(mode))
    if mode == "batched":  # one item per destination key per batch, as the flow sends
        def group(items):
            d: dict = {}
            for k, v in items:
                d.setdefault(k, []).append(v)
            return list(d.items())
        s = op.flat_map_batch("group", s, group)
    if mode == "routed":  # one list per destination *worker* and batch, unpacked there
        from forewarn.dataflows.placement import Placement, route_keys
        route = route_keys(PROC[1])  # a key on each worker
        place = Placement(PROC[1])

        def by_worker(items):
            d: dict = {}
            for k, v in items:
                d.setdefault(route[place(k)], []).append((k, v))
            return list(d.items())
        s = op.flat_map_batch("by_worker", s, by_worker)
        s = op.stateful_flat_map("unpack", s, lambda _, kvs: (None, kvs))
    st = op.stateful_map("count", s,
                         lambda n, v: ((n or 0) + (len(v) if isinstance(v, list) else 1), None))
    op.output("out", st, Sink())
    return f

def _run(n: int, mode: str, tries: int = 3) -> tuple[float, float]:
    """(wall, CPU of all processes) of one run on ``n`` processes (again on other ports
    when one was taken between choosing it and the cluster binding it)."""
    for _ in range(tries):
        socks = [socket.socket() for _ in range(n)]
        for s in socks:  # all held at once: n different free ports
            s.bind(("127.0.0.1", 0))
        addrs = ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
        for s in socks:
            s.close()
        procs = [subprocess.Popen([sys.executable, "-m", "bench.bytewax_exchange", "--child",
                                   str(i), addrs, mode, str(M[0]), str(PARTS[0])],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                 for i in range(n)]
        outs = [p.communicate()[0].decode().strip().splitlines() for p in procs]
        if all(p.returncode == 0 and o for p, o in zip(procs, outs, strict=True)):
            done = [json.loads(o[-1]) for o in outs]
            return max(o["wall"] for o in done), sum(o["cpu"] for o in done)
    raise SystemExit(f"{n} processes failed {tries} times (ports taken?)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        from bytewax.testing import cluster_main
        M[0], PARTS[0] = int(sys.argv[5]), int(sys.argv[6])
        PROC[:] = [int(sys.argv[2]), len(sys.argv[3].split(","))]
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
        cluster_main(flow(sys.argv[4]), sys.argv[3].split(","), int(sys.argv[2]),
                     epoch_interval=timedelta(seconds=0.25), worker_count_per_proc=1)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                          "wall": time.time() - t0}))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=250_000, help="items per source partition")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                    help="process counts to compare (the first is the reference: 1)")
    ap.add_argument("--modes", nargs="+", default=["items", "batched", "local"],
                    choices=["items", "batched", "local", "routed"])
    args = ap.parse_args()
    M[0] = args.items
    PARTS[0] = max(args.processes)
    total = PARTS[0] * args.items
    for mode in args.modes:
        runs: dict[int, list] = {n: [] for n in args.processes}
        for _ in range(args.repeat):
            for n in args.processes:
                runs[n].append(_run(n, mode))
        for n in args.processes:
            wall = statistics.median(w for w, _ in runs[n])
            cpu = statistics.median(c for _, c in runs[n])
            print(f"{mode:8s} {n} process(es): wall {wall:5.2f} s  CPU {cpu:5.2f} s  "
                  f"{cpu / total * 1e6:5.2f} us CPU/item  {total / wall / 1000:5.0f} k items/s")
        for n in args.processes[1:]:
            ratios = [w1 / w2 for (w1, _), (w2, _) in zip(runs[1], runs[n], strict=True)]
            print(f"{mode:8s} {n} processes / 1: {statistics.median(ratios):.2f}x the "
                  f"throughput (median of rounds; rounds {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
