"""Scale-out: the whole flow's throughput and CPU with N single-worker processes.

The simulator's lines are written once to a JSONL file; for each N in ``--processes``
N processes (``python -m bench.scale_out --child ...``) each build the same flow over
``forewarn.connectors.files.JsonlFilesSource([file])`` with file sinks
(``forewarn.runner.file_outputs``) and run it with Bytewax's
``cluster_main(flow, addresses, proc_id, worker_count_per_proc=1)`` on free local
ports: one worker per process, so the workers do not share a GIL.

Partitioned input: ``JsonlFilesSource(paths, partitions=P)`` and
``FlowConfig(shards=P)`` are passed only when they accept those keywords
(``inspect``); otherwise the input is one source partition and the flow has one
sequencer, and P is reported as 1. P defaults to N; ``--partitions`` fixes it.

Measured per run:

* **wall**: from the launch of the first process to the exit of the last (start-up and
  imports included), and **flow wall**: from the earliest ``cluster_main`` call to the
  latest return (what events/s is computed from);
* **CPU** of each process: its whole life (``os.wait4`` rusage: user + system, all
  threads) and the flow's part (``getrusage(RUSAGE_SELF)`` around ``cluster_main``);
  CPU per event, max / mean flow CPU per process;
* **CPU per step and per key**: each process wraps the ``on_batch`` / ``on_notify`` /
  ``on_eof`` / ``snapshot`` methods of every ``StatefulBatchLogic`` in
  ``forewarn.dataflows.flow`` and the decode step (``_decode_batch``) in a ``thread_time``
  counter, per logic object (one per key). Steps that had one key in the whole run
  are the single-key (constant-key) steps; their share of the flow CPU is reported.
  What no counter covers (Bytewax's engine and exchange, stateless maps, encoding,
  file I/O) is "rest". The flow's own timing, ``forewarn_step_batch_duration_seconds``,
  times only the sequence step (wall clock), and is reported beside it as a check.
  What each process received over TCP from the others (Bytewax's exchange between
  processes) is sampled from ``TCP_INFO`` (:class:`TcpReceived`);
* **bound**: from one process's step CPU, the share in decode (on one input partition)
  and in single-key steps, and the speed-up Amdahl's law then allows any N;
* **determinism**: the three outputs of every run, each sorted, against those of the
  one-process run with the same P (run as a reference when ``--processes`` lacks it).

Runs alternate over the configurations ``--repeat`` times; figures are medians, and the
N-process / 1-process ratio is the median of per-round ratios (the machine drifts).

Each child builds the flow for the cluster's worker count (``build_flow(workers=N)``): a
sequencer then ships what is bound for another worker's sites and care shards as one
item per worker and batch. ``--no-ship`` builds it as for one worker (each list its own
item, as before); ``--ship-ab`` runs every configuration of several processes both ways
in each round and compares their CPU per event.

    .venv/bin/python -m bench.scale_out                         # 1 and 2 processes, ~2 min
    .venv/bin/python -m bench.scale_out --processes 1 2 4 8 --repeat 3
    .venv/bin/python -m bench.scale_out --sites 10 --hours 1 --repeat 1 --json -
    .venv/bin/python -m bench.scale_out --processes 1 2 --repeat 3 --ship-ab --no-step-cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_NAMES = ("actions.jsonl", "incidents.jsonl", "dead_letters.jsonl")
#: Logic methods timed per key; the others (``notify_at``) only read a field.
TIMED_METHODS = ("on_batch", "on_notify", "on_eof", "snapshot")


# ---- partitioned input: only where the source and the flow take it ------------------


def partition_support() -> dict[str, bool]:
    """Which of the two keywords of partitioned input this checkout accepts."""
    from forewarn.connectors.files import JsonlFilesSource
    from forewarn.dataflows.flow import FlowConfig

    return {"source_partitions": "partitions" in inspect.signature(JsonlFilesSource).parameters,
            "flow_shards": "shards" in inspect.signature(FlowConfig).parameters}


def effective_partitions(requested: int) -> int:
    """P as the flow will run it: 1 when the source cannot split its input."""
    return requested if partition_support()["source_partitions"] else 1


# ---- the child: one process of the cluster ----------------------------------------------


class StepTimer:
    """CPU (``thread_time``) of each step's logic, per logic object, i.e. per key."""

    def __init__(self) -> None:
        self.cpu: dict[str, dict[int, float]] = {}
        self.names: dict[int, str] = {}  # id of a logic object -> its key (--per-key)

    def wrap(self, step: str, fn: Callable, per_key: bool) -> Callable:
        by_key = self.cpu.setdefault(step, {})
        clock = time.thread_time

        if per_key:
            def timed_method(obj: Any, *args: Any) -> Any:
                t0 = clock()
                try:
                    return fn(obj, *args)
                finally:
                    k = id(obj)
                    by_key[k] = by_key.get(k, 0.0) + clock() - t0
            return timed_method

        def timed(*args: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args)
            finally:
                by_key[0] = by_key.get(0, 0.0) + clock() - t0
        return timed

    def install(self) -> None:
        """Wrap the flow's stateful logic classes and its decode step in place."""
        from bytewax.operators import StatefulBatchLogic

        from forewarn.dataflows import flow as fl

        for name, cls in vars(fl).items():
            if (inspect.isclass(cls) and issubclass(cls, StatefulBatchLogic)
                    and cls is not StatefulBatchLogic):
                step = name.removesuffix("Logic").lower()
                for meth in TIMED_METHODS:
                    if meth in vars(cls):
                        setattr(cls, meth, self.wrap(step, vars(cls)[meth], per_key=True))
        # build_flow's decode step calls the module's _decode_batch at run time
        fl._decode_batch = self.wrap("decode", fl._decode_batch, per_key=False)

    def report(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            step: {"cpu_s": sum(keys.values()), "keys": len(keys),
                   "max_key_cpu_s": max(keys.values(), default=0.0)}
            for step, keys in self.cpu.items()}
        if self.names:  # --per-key: each key's CPU under its name
            for step, keys in self.cpu.items():
                if step != "decode":
                    out[step]["per_key"] = {self.names.get(k, f"?{k}"): c
                                            for k, c in keys.items()}
        return out

    def name_keys(self) -> None:
        """Learn each logic object's key: every stateful step gets its items with their
        key repeated in the value (one more map step and a longer tuple per item, so
        only with ``--per-key``), and a thin logic notes the key and strips it."""
        import bytewax.operators as op

        real_map, real_stateful = op.map, op.stateful_batch
        names = self.names

        class KeyNoter(op.StatefulBatchLogic):
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def on_batch(self, values: list) -> Any:
                names[id(self.inner)] = values[0][0]
                return self.inner.on_batch([v for _, v in values])

            def on_notify(self) -> Any:
                return self.inner.on_notify()

            def on_eof(self) -> Any:
                return self.inner.on_eof()

            def notify_at(self) -> Any:
                return self.inner.notify_at()

            def snapshot(self) -> Any:
                return self.inner.snapshot()

        def keyed(step_id: str, up: Any, builder: Callable) -> Any:
            tagged = real_map(f"{step_id}_key_named", up, lambda kv: (kv[0], kv))
            return real_stateful(step_id, tagged, lambda resume: KeyNoter(builder(resume)))

        op.stateful_batch = keyed


def _rusage_cpu(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


class TcpReceived:
    """Bytes this process received over TCP: Bytewax's links to the other processes.

    A thread samples ``TCP_INFO`` (``tcpi_bytes_received``) of every socket the process
    holds, every ``every_s``; the sockets belong to Bytewax's Rust code, so each is read
    through a duplicate of its descriptor, closed at once. What arrives after the last
    sample before a link closes is missed (at most ``every_s`` of traffic)."""

    OFFSET = 128  # of tcpi_bytes_received in Linux's struct tcp_info (since 4.1)

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.seen: dict[str, int] = {}  # "socket:[inode]" -> bytes received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-received", daemon=True)

    def sample(self) -> None:
        for name in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{name}")
                if not link.startswith("socket:"):
                    continue
                sock = socket.socket(fileno=os.dup(int(name)))
            except OSError:  # closed meanwhile
                continue
            try:
                if sock.type == socket.SOCK_STREAM:
                    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
                    got = int.from_bytes(info[self.OFFSET:self.OFFSET + 8], "little")
                    self.seen[link] = max(self.seen.get(link, 0), got)
            except OSError:
                pass
            finally:
                sock.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def child_main(args: argparse.Namespace) -> None:
    """Run this process's part of the cluster; print one JSON line of measurements."""
    from bytewax.testing import cluster_main
    from prometheus_client import REGISTRY

    from forewarn.connectors.files import JsonlFilesSource
    from forewarn.dataflows.flow import FlowConfig, build_flow
    from forewarn.rules.rulebook import load_rulebook
    from forewarn.runner import file_outputs, tune_gc

    timer = StepTimer()
    if not args.no_step_cpu:
        timer.install()
        if args.per_key:
            timer.name_keys()
    support = partition_support()
    src_kw = {"partitions": args.partitions} if support["source_partitions"] else {}
    cfg_kw = {"shards": args.partitions} if support["flow_shards"] else {}
    source = JsonlFilesSource([args.input], **src_kw)
    addresses = args.addresses.split(";") if args.addresses else []
    # the worker count, where the flow takes it (it then ships other workers' lists)
    flow_kw = ({"workers": max(1, len(addresses))} if not args.no_ship
               and "workers" in inspect.signature(build_flow).parameters else {})
    flow = build_flow(source, file_outputs(Path(args.out)),
                      FlowConfig(book=load_rulebook(), **cfg_kw), **flow_kw)
    tune_gc()  # as `forewarn run` does
    tcp = TcpReceived() if len(addresses) > 1 else None
    if tcp is not None:
        tcp.start()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    cluster_main(flow, addresses, args.proc_id,
                 epoch_interval=timedelta(seconds=args.epoch_s), worker_count_per_proc=1)
    t1, r1 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    received = tcp.stop() if tcp is not None else 0
    seq_wall = REGISTRY.get_sample_value("forewarn_step_batch_duration_seconds_sum",
                                         {"step": "sequence"})
    print(json.dumps({"proc_id": args.proc_id, "flow_start": t0, "flow_end": t1,
                      "flow_cpu_s": _rusage_cpu(r1) - _rusage_cpu(r0),
                      "steps": timer.report(), "sequence_metric_wall_s": seq_wall,
                      "tcp_received": received}),
          flush=True)


# ---- the parent: launch, wait, measure ------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_cmd(input_path: Path, out_dir: Path, proc_id: int, addresses: str,
              partitions: int, epoch_s: float, step_cpu: bool = True,
              per_key: bool = False, ship: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "bench.scale_out", "--child", "--input", str(input_path),
           "--out", str(out_dir), "--proc-id", str(proc_id), "--addresses", addresses,
           "--partitions", str(partitions), "--epoch-s", repr(epoch_s)]
    if not ship:
        cmd.append("--no-ship")
    if not step_cpu:
        return [*cmd, "--no-step-cpu"]
    return [*cmd, "--per-key"] if per_key else cmd


def output_digest(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Each output's sorted lines: how many, and their SHA-256 (order-free comparison)."""
    got = {}
    for name in OUTPUT_NAMES:
        path = out_dir / name
        lines = sorted(path.read_bytes().splitlines()) if path.exists() else []
        got[name] = {"lines": len(lines),
                     "sha256": hashlib.sha256(b"\n".join(lines)).hexdigest()}
    return got


def launch(input_path: Path, out_dir: Path, processes: int, partitions: int,
           epoch_s: float = 0.25, timeout_s: float = 900.0,
           step_cpu: bool = True, per_key: bool = False, ship: bool = True
           ) -> dict[str, Any]:
    """Run the flow as ``processes`` single-worker processes; measure the run."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    addresses = (";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
                 if processes > 1 else "")
    logs = [out_dir / f"proc{i}.log" for i in range(processes)]
    procs: list[subprocess.Popen] = []
    w0 = time.perf_counter()
    for i in range(processes):
        with (out_dir / f"proc{i}.json").open("wb") as out, logs[i].open("wb") as err:
            procs.append(subprocess.Popen(
                child_cmd(input_path, out_dir, i, addresses, partitions, epoch_s, step_cpu,
                          per_key, ship),
                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL))
    # os.wait4 gives each child's own rusage (all its threads); poll so that a process
    # waiting forever for a dead peer is ended at the deadline rather than hanging here
    rusage: dict[int, resource.struct_rusage] = {}
    codes: dict[int, int] = {}
    ends: dict[int, float] = {}
    deadline = w0 + timeout_s
    try:
        while len(codes) < processes:
            for i, p in enumerate(procs):
                if i in codes:
                    continue
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    ends[i] = time.perf_counter()
                    codes[i] = p.returncode = os.waitstatus_to_exitcode(status)
                    rusage[i] = ru
            if len(codes) < processes:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{processes} processes still running after "
                                       f"{timeout_s:g} s")
                time.sleep(0.005)
    finally:
        for i, p in enumerate(procs):
            if i not in codes:
                p.kill()
                p.wait()
    wall = max(ends.values()) - w0
    failed = {i: c for i, c in codes.items() if c != 0}
    if failed:
        tails = "\n".join(f"--- process {i} (exit {c}):\n"
                          + logs[i].read_text(errors="replace")[-2000:]
                          for i, c in failed.items())
        raise RuntimeError(f"processes exited non-zero: {failed}\n{tails}")
    reports = [json.loads((out_dir / f"proc{i}.json").read_text().strip().splitlines()[-1])
               for i in range(processes)]
    start = min(r["flow_start"] for r in reports)
    end = max(r["flow_end"] for r in reports)
    return {"processes": processes, "partitions": partitions, "wall_s": wall,
            "flow_wall_s": end - start,
            "proc_cpu_s": [_rusage_cpu(rusage[i]) for i in range(processes)],
            "flow_cpu_s": [r["flow_cpu_s"] for r in reports],
            "steps": [r["steps"] for r in reports],
            "sequence_metric_wall_s": [r["sequence_metric_wall_s"] for r in reports],
            "outputs": output_digest(out_dir),
            "exchanged_bytes": sum(r["tcp_received"] for r in reports)}


def step_summary(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per step over all processes: CPU, keys, the busiest key, processes it ran on."""
    steps: dict[str, dict[str, Any]] = {}
    for proc_id, per_proc in enumerate(run["steps"]):
        for step, s in per_proc.items():
            acc = steps.setdefault(step, {"cpu_s": 0.0, "keys": 0, "max_key_cpu_s": 0.0,
                                          "on_processes": 0, "proc_ids": []})
            acc["cpu_s"] += s["cpu_s"]
            acc["keys"] += s["keys"]
            acc["max_key_cpu_s"] = max(acc["max_key_cpu_s"], s["max_key_cpu_s"])
            if s["keys"] > 0:
                acc["on_processes"] += 1
                acc["proc_ids"].append(proc_id)
    return steps


def single_key_share(run: dict[str, Any]) -> tuple[float, list[str]]:
    """Share of the flow's CPU in steps that had one key in the whole run (not decode:
    a stateless step, though it too runs where the source partitions are)."""
    steps = step_summary(run)
    single = sorted(s for s, v in steps.items() if v["keys"] == 1 and s != "decode")
    cpu = sum(run["flow_cpu_s"])
    return (sum(steps[s]["cpu_s"] for s in single) / cpu if cpu else 0.0), single


# ---- reporting ------------------------------------------------------------------------


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def summarize(runs: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """Medians of one configuration's runs."""
    flow_cpu = [sum(r["flow_cpu_s"]) for r in runs]
    return {
        "processes": runs[0]["processes"], "partitions": runs[0]["partitions"],
        "runs": len(runs),
        "events_per_s": _med([events / r["flow_wall_s"] for r in runs]),
        "events_per_s_whole": _med([events / r["wall_s"] for r in runs]),
        "flow_wall_s": _med([r["flow_wall_s"] for r in runs]),
        "wall_s": _med([r["wall_s"] for r in runs]),
        "cpu_us_per_event": _med([1e6 * c / events for c in flow_cpu]),
        "proc_cpu_us_per_event": _med([1e6 * sum(r["proc_cpu_s"]) / events for r in runs]),
        "max_mean_cpu": _med([max(r["flow_cpu_s"]) / (sum(r["flow_cpu_s"]) / len(r["flow_cpu_s"]))
                              for r in runs]),
        "single_key_share": _med([single_key_share(r)[0] for r in runs]),
        "exchanged_bytes_per_event": _med([r["exchanged_bytes"] / events for r in runs]),
        "single_key_steps": single_key_share(runs[0])[1],
        "steps": step_summary(runs[-1]),
        "flow_cpu_s_per_proc": runs[-1]["flow_cpu_s"],
        "sequence_metric_wall_s": runs[-1]["sequence_metric_wall_s"],
        "outputs": runs[0]["outputs"],
    }


def print_table(rows: list[dict[str, Any]], identical: dict[tuple[int, int], bool]) -> None:
    print(f"\n{'N':>3} {'P':>3} {'k ev/s':>8} {'whole':>7} {'flow s':>7} {'µs CPU/ev':>10} "
          f"{'+start':>7} {'max/mean':>9} {'1-key %':>8} {'B/ev':>6}  outputs vs N=1")
    for r in rows:
        key = (r["processes"], r["partitions"])
        same = "OK" if identical[key] else "DIFFERENT"
        if r["processes"] == 1:  # the reference: its later rounds against its first
            same = "reference" + (" (rounds OK)" if r["runs"] > 1 and identical[key] else
                                  "" if identical[key] else " (rounds DIFFERENT)")
        print(f"{r['processes']:3d} {r['partitions']:3d} {r['events_per_s'] / 1e3:8.1f} "
              f"{r['events_per_s_whole'] / 1e3:7.1f} {r['flow_wall_s']:7.2f} "
              f"{r['cpu_us_per_event']:10.2f} {r['proc_cpu_us_per_event']:7.2f} "
              f"{r['max_mean_cpu']:9.2f} {100 * r['single_key_share']:8.1f} "
              f"{r['exchanged_bytes_per_event']:6.0f}  {same}")
    print("k ev/s: events / flow wall (first cluster_main call to last return); whole: "
          "events / wall from launch to last exit; µs CPU/ev: flow CPU of all processes; "
          "+start: with start-up and imports; max/mean: flow CPU of the busiest process "
          "over the mean; 1-key %: share of flow CPU in steps with one key; B/ev: bytes "
          "exchanged between processes per event (medians)")


def speedup_bound(row: dict[str, Any]) -> tuple[float, float]:
    """Amdahl's bound from one process's step CPU: the share of CPU in decode (on one
    input partition, where that partition is) and in single-key steps, which no added
    process can split; the speed-up over that process is at most 1 / share, before any
    exchange cost."""
    cpu = sum(row["flow_cpu_s_per_proc"])
    serial = sum(s["cpu_s"] for step, s in row["steps"].items()
                 if (step == "decode" and row["partitions"] == 1) or s["keys"] == 1)
    share = serial / cpu if cpu else 0.0
    return share, (1 / share if share else float("inf"))


def print_steps(row: dict[str, Any]) -> None:
    cpu = sum(row["flow_cpu_s_per_proc"])
    timed = sum(s["cpu_s"] for s in row["steps"].values())
    print(f"\nCPU per step, N={row['processes']} P={row['partitions']} (last run; flow CPU "
          f"{cpu:.2f} s, per process {', '.join(f'{c:.2f}' for c in row['flow_cpu_s_per_proc'])}"
          f" s)")
    print(f"{'step':12s} {'CPU s':>7} {'share':>6} {'keys':>5} {'busiest key':>12} "
          f"{'processes':>9}  (which, when one)")
    for step, s in sorted(row["steps"].items(), key=lambda kv: -kv[1]["cpu_s"]):
        share = s["cpu_s"] / cpu if cpu else 0.0
        keys = "-" if step == "decode" else str(s["keys"])  # stateless: no keys
        print(f"{step:12s} {s['cpu_s']:7.2f} {100 * share:5.1f}% {keys:>5s} "
              f"{s['max_key_cpu_s']:11.2f}s {s['on_processes']:9d}"
              + (f"  (#{s['proc_ids'][0]})" if s["on_processes"] == 1 else ""))
    print(f"{'rest':12s} {cpu - timed:7.2f} {100 * (cpu - timed) / cpu if cpu else 0:5.1f}%"
          "   (Bytewax engine and exchange, stateless steps, encoding, file I/O)")
    seq = [x for x in row["sequence_metric_wall_s"] if x]
    if seq:
        print(f"forewarn_step_batch_duration_seconds{{step=\"sequence\"}} sum: "
              f"{sum(seq):.2f} s wall (the only step the flow times itself)")


def print_projection(rows: list[dict[str, Any]], runs: dict[tuple[int, int], list[dict]],
                     configs: Sequence[tuple[int, int]], events: int,
                     counts: Sequence[int]) -> list[dict[str, Any]]:
    """Place the one-process run's keys on N workers as Bytewax would
    (:func:`bench.routing.project`), its input re-cut into N shards; the exchange's cost
    from the measured 2-process run, grown with the share of items that cross."""
    from bench.routing import project

    ones = [c for c in configs if c[0] == 1]
    if not ones:
        return []
    n1, p1 = max(ones, key=lambda c: c[1])
    run = runs[(n1, p1)][-1]
    steps = run["steps"][0]
    per_key = {step: s["per_key"] for step, s in steps.items() if "per_key" in s}
    cpu1 = run["flow_cpu_s"][0]
    keyed = sum(sum(k.values()) for k in per_key.values())
    by = {(r["processes"], r["partitions"]): r for r in rows}
    two = by.get((2, p1))
    # extra CPU per event when half the items cross (2 processes), over one process
    cross_us = 2 * (two["cpu_us_per_event"] - by[(1, p1)]["cpu_us_per_event"]) if two else None
    print(f"\nProjection from the 1-process run at P={p1} (flow CPU {cpu1:.2f} s; keyed steps "
          f"{keyed:.2f} s, the rest spread evenly): keys placed as Bytewax 0.21.1 places "
          "them (bench.routing), the input cut into one shard per worker" +
          ("" if two is None else f"; exchange {cross_us:.2f} µs per event when every "
           "item would cross, from the 2-process run, times the share that crosses "
           "((N-1)/N)"))
    print(f"{'N':>4} {'busiest/mean':>12} {'speed-up (CPU only)':>20} "
          f"{'with exchange':>14}  busiest keys (CPU s)")
    out = []
    for n in counts:
        pr = project(per_key, cpu1 - keyed, n, shards={"sequence": p1})
        with_x = None
        if cross_us is not None:
            extra = events * cross_us * 1e-6 * (n - 1) / n
            with_x = cpu1 / (pr["busiest_s"] + extra / n)
        top = ", ".join(f"{step} {k} {c:.2f}" for step, (k, c) in sorted(
            pr["busiest_key"].items(), key=lambda kv: -kv[1][1])[:3])
        print(f"{n:4d} {pr['max_mean']:12.2f} {pr['speedup']:19.2f}x "
              f"{'' if with_x is None else f'{with_x:.2f}x':>14}  {top}")
        out.append(pr | {"speedup_with_exchange": with_x})
    return out


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def write_input(lines: Sequence[bytes], path: Path) -> None:
    with path.open("wb") as fh:
        for line in lines:
            fh.write(line + b"\n")


def plan(processes: Sequence[int], partitions: int | None) -> list[tuple[int, int]]:
    """Configurations (N, P) to run: each N, then a one-process reference per P."""
    configs = [(n, effective_partitions(partitions or n)) for n in processes]
    for p in sorted({p for _, p in configs}):
        if (1, p) not in configs:
            configs.append((1, p))
    return list(dict.fromkeys(configs))


def run_matrix(input_path: Path, work: Path, configs: Sequence[tuple[int, int]],
               repeat: int, epoch_s: float, step_cpu: bool = True,
               log: Callable[[str], None] = print,
               per_key: bool = False, ship: bool = True,
               unshipped: dict[tuple[int, int], list[dict]] | None = None
               ) -> dict[tuple[int, int], list[dict]]:
    """Every configuration ``repeat`` times, alternating. With ``unshipped`` (a dict to
    fill), each configuration of several processes also runs, in the same round, with
    the flow built as for one worker (``--no-ship``)."""
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    for i in range(repeat):
        for n, p in configs:
            for shipped in (ship, False) if unshipped is not None and n > 1 else (ship,):
                run = launch(input_path, work / f"n{n}-p{p}", n, p, epoch_s,
                             step_cpu=step_cpu, per_key=per_key, ship=shipped)
                if shipped == ship:
                    runs[(n, p)].append(run)
                else:
                    unshipped.setdefault((n, p), []).append(run)
                log(f"  round {i + 1}/{repeat} N={n} P={p}{'' if shipped else ' (no ship)'}: "
                    f"flow wall {run['flow_wall_s']:6.2f} s, whole {run['wall_s']:6.2f} s, "
                    f"flow CPU {'+'.join(f'{c:.2f}' for c in run['flow_cpu_s'])} s")
    return runs


def determinism(runs: dict[tuple[int, int], list[dict]]) -> dict[tuple[int, int], bool]:
    """Every run's outputs against the first one-process run with the same P."""
    return {(n, p): all(r["outputs"] == runs[(1, p)][0]["outputs"] for r in rs)
            for (n, p), rs in runs.items()}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=300)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--subscribers-per-cell", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                    help="process counts to run (one worker each)")
    ap.add_argument("--partitions", type=int, default=None,
                    help="input partitions P (default: N; 1 while the source cannot split)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds over the configurations")
    ap.add_argument("--epoch-s", type=float, default=0.25)
    ap.add_argument("--no-step-cpu", action="store_true",
                    help="do not time the steps (leaves the flow unwrapped)")
    ap.add_argument("--per-key", action="store_true",
                    help="also time each key by name (one more map step per stateful step) "
                         "and project the one-process run onto --project worker counts")
    ap.add_argument("--project", type=int, nargs="+", default=[2, 4, 8, 16, 64],
                    help="worker counts to project onto (with --per-key)")
    ap.add_argument("--no-ship", action="store_true",
                    help="build the flow as for one worker: the sequencer sends each site "
                         "its own item even on another worker (what shipping saves)")
    ap.add_argument("--ship-ab", action="store_true",
                    help="also run each configuration of several processes with --no-ship "
                         "in the same round, and compare CPU per event")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON ('-': stdout)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (input and outputs kept)")
    # a process of the cluster
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--proc-id", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args)
        return
    if min(args.processes) < 1 or (args.partitions is not None and args.partitions < 1):
        ap.error("--processes and --partitions must be >= 1")

    from forewarn.simulator import ScenarioConfig, simulate

    support = partition_support()
    configs = plan(args.processes, args.partitions)
    print(f"python {platform.python_version()}, bytewax {version('bytewax')}, "
          f"{os.cpu_count()} CPUs, one worker per process, epoch {args.epoch_s:g} s")
    print("partitioned input: JsonlFilesSource(partitions=) "
          f"{'yes' if support['source_partitions'] else 'no'}, FlowConfig(shards=) "
          f"{'yes' if support['flow_shards'] else 'no'}"
          + ("" if support["source_partitions"] else ": one source partition, P = 1"))
    cfg = ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                         subscribers_per_cell=args.subscribers_per_cell)
    t0 = time.perf_counter()
    lines = simulate(cfg).lines
    events = len(lines)
    print(f"scenario: seed={cfg.seed} sites={cfg.sites} hours={cfg.hours:g} "
          f"subscribers_per_cell={cfg.subscribers_per_cell:g}: {events} events "
          f"(simulated in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="scale_out-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        input_path = work / "input.jsonl"
        write_input(lines, input_path)
        del lines
        print(f"configurations (N processes, P partitions): {configs}; load average before: "
              f"{loadavg()}")
        unshipped: dict[tuple[int, int], list[dict]] | None = {} if args.ship_ab else None
        runs = run_matrix(input_path, work, configs, args.repeat, args.epoch_s,
                          step_cpu=not args.no_step_cpu, per_key=args.per_key,
                          ship=not args.no_ship, unshipped=unshipped)
        print(f"load average after: {loadavg()}")
    same = determinism(runs)
    rows = [summarize(runs[c], events) for c in configs]
    print_table(rows, same)
    for (n, p), plain in (unshipped or {}).items():
        cpu = [[1e6 * sum(r["flow_cpu_s"]) / events for r in rs] for rs in (runs[(n, p)], plain)]
        ok = all(r["outputs"] == runs[(1, p)][0]["outputs"] for r in plain)
        print(f"N={n} P={p}: µs CPU/ev shipped {_med(cpu[0]):.2f} "
              f"({', '.join(f'{x:.1f}' for x in cpu[0])}), not shipped {_med(cpu[1]):.2f} "
              f"({', '.join(f'{x:.1f}' for x in cpu[1])}), rounds alternated; outputs not "
              f"shipped {'OK' if ok else 'DIFFERENT'}")
    for (n, p), ok in same.items():
        outs = runs[(n, p)][0]["outputs"]
        counts = ", ".join(f"{v['lines']} {k.removesuffix('.jsonl')}" for k, v in outs.items())
        what = (f"N={n} P={p} vs N=1 P={p}" if n > 1 else
                f"N=1 P={p}, its {len(runs[(n, p)])} rounds against its first")
        print(f"determinism {what}: {'OK' if ok else 'DIFFERENT'} ({counts})")
    if not args.no_step_cpu:
        for r in rows:
            print_steps(r)
        for r in rows:
            if r["processes"] == 1:
                share, bound = speedup_bound(r)
                print(f"\nP={r['partitions']}: decode and single-key steps take "
                      f"{100 * share:.1f} % of one process's CPU: with any number of "
                      f"processes at most {bound:.2f}x its throughput (Amdahl), before the "
                      f"cost of exchanging items between processes")
    projections = print_projection(rows, runs, configs, events, args.project) \
        if args.per_key and not args.no_step_cpu else []
    ratios = {}
    one = next((c for c in configs if c[0] == 1), None)
    for c in configs:
        if one is None or c[0] == 1:
            continue
        pairs = list(zip(runs[c], runs[one], strict=True))  # the same round: paired
        per_round = [b["flow_wall_s"] / a["flow_wall_s"] for a, b in pairs]
        whole = [b["wall_s"] / a["wall_s"] for a, b in pairs]
        ratios[f"{c[0]}/1"] = {"flow": _med(per_round), "whole": _med(whole),
                               "per_round": per_round}
        print(f"\n{c[0]} processes (P={c[1]}) / 1 process (P={one[1]}) throughput = "
              f"{_med(per_round):.2f}x (median of per-round ratios "
              f"{', '.join(f'{x:.2f}' for x in per_round)}; whole run with start-up "
              f"{_med(whole):.2f}x)" + ("; goal >= 1.7x: " + ("met" if _med(per_round) >= 1.7
                                                              else "NOT met")
                                         if c[0] == 2 else ""))
    if args.json:
        doc = {"scenario": dataclasses.asdict(cfg) | {"events": events},
               "partition_support": support, "epoch_s": args.epoch_s, "repeat": args.repeat,
               "rows": [r | {"identical_to_one_process": same[(r["processes"],
                                                                r["partitions"])]}
                        for r in rows],
               "ratios": ratios, "projections": projections,
               "runs": {f"{n},{p}": rs for (n, p), rs in runs.items()}}
        text = json.dumps(doc, indent=1, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
