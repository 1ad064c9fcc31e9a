"""Kafka -> flow -> Kafka: throughput, event-to-action latency, recovery overhead.

Everything runs against a real local broker (``forewarn broker start``) on this
machine; flows run as ``forewarn run --bootstrap`` subprocesses, as in production.

1. **Saturation throughput.** The scenario is published once to fresh topics, and its
   first half to other fresh topics; ``forewarn run --exit-at-end`` reads each to its
   end and exits. Events/s is the *marginal* rate: (records of the whole - records of
   the half) / (wall time on the whole - wall time on the half). Everything both runs
   share - interpreter start, topic metadata, consumers' first fetches, bytewax start-up
   and shutdown, the last flush - cancels out. The **pass-through** is Bytewax's own
   ``kop.input`` (``KafkaSource``, ``tail=False``) over the same input topics ->
   ``KafkaSinkMessage`` -> ``kop.output`` to one topic, timed the same way, with the
   batch size it does best with (``--passthrough-batch``, 5,000: in four paired rounds
   on the 24 h scenario its marginal wall time was 2.43 s at 5 k, 2.77 s at 20 k and
   2.87 s at 1 k, Bytewax's default; Forewarn's source reads 20 k, its own best).
   Each of the four commands runs
   ``--repeat`` times, alternated; the rate comes from the median of each round's
   whole-minus-half difference. Forewarn runs with ``--dedupe-tail 0``: on these
   reused topics reading its outputs' tails would skip every output of the earlier
   rounds, and time spent reading them would count as processing.

   (Taking the fixed cost as the wall time on *empty* topics would be unfair
   to the flow with the shorter start: on empty topics the pass-through's 24 consumers
   wait ~1 s for their first fetches, a wait that overlaps its processing when there
   is data, so its "processing time" came out below its own main thread's CPU time.)
   The CPU time of each run (all threads, ``RUSAGE_CHILDREN``) is reported the same
   way, per event: what each costs the machine, beside how fast it goes.
2. **Latency.** A fresh flow runs live; the scenario is published at a fixed rate
   (50 % of the measured saturation by default, and as fast as possible), while a
   consumer tails ``care.actions`` and ``noc.incidents`` and notes the wall time each
   output arrives. An output's ``event_time`` is when it became due in event time
   (alarm + 120 s hold-down for an outage notice; end of the group wait for an
   incident). The flow cannot emit it before it has seen an input at or after
   ``event_time + lateness`` (the sequencer's reorder window): its **trigger** is the
   first published record whose stream time reaches that. Latency = arrival wall time
   - the trigger's publish wall time. So the deliberate waits (hold-down, group wait,
   reorder window) are excluded, and what remains is the system: producer batching,
   broker, fetch, merge, flow, sink flush with ``acks=all``, consumer fetch. (The
   sequencer ticks every 15 s of event time; at the rates here that is a few ms of
   wall time, and is included.)
3. **Recovery overhead.** The marginal rate (as in 1., one round) with ``--recovery`` at
   several ``--snapshot-interval`` values.

    .venv/bin/forewarn broker start --port 9092
    .venv/bin/python -m bench.kafka_throughput --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from forewarn.codec import fmt_time
from forewarn.connectors.kafka_publish import Topics, publish_lines
from forewarn.connectors.kafka_run import DEFAULT_LATENESS_S
from forewarn.connectors.kafka_source import NEG_INF, stream_time
from forewarn.connectors.topics import create_topics
from forewarn.dataflows.sequencer import AHEAD_QUORUM
from forewarn.runner import tune_gc
from forewarn.simulator import ScenarioConfig, simulate

RESULTS = Path(__file__).with_name("RESULTS.md")
QUIET_S = 15.0  # a latency run ends when no output has come for this long


def _fresh(config: dict, partitions: int, extra: tuple[str, ...] = ()) -> Topics:
    topics = Topics(f"bench.{uuid.uuid4().hex[:8]}.")
    create_topics(config, partitions, prefix=topics.prefix)
    if extra:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(config)
        for fut in admin.create_topics([NewTopic(topics.prefix + e, partitions, 1)
                                        for e in extra]).values():
            fut.result()
    return topics


def _drop(config: dict, *topics: Topics) -> None:
    """Delete a run's topics (with its pass-through output): a broker that outlives the
    run (``~/.cache/forewarn``) would otherwise keep every run's copy of the scenario."""
    from confluent_kafka.admin import AdminClient

    names = [n for t in topics for n in (*t.all, t.prefix + "passthrough")]
    admin = AdminClient(config)
    existing = admin.list_topics(timeout=30).topics
    doomed = [n for n in names if n in existing]
    for fut in admin.delete_topics(doomed, operation_timeout=60).values() if doomed else ():
        fut.result()


def _forewarn(bootstrap: str, topics: Topics, *extra: str) -> list[str]:
    return [sys.executable, "-m", "forewarn.cli", "run", "--bootstrap", bootstrap,
            "--topic-prefix", topics.prefix, "--metrics-port", "-1", "--log-level", "WARNING",
            "--dedupe-tail", "0", *extra]


def _children_cpu() -> float:
    """CPU seconds (user + system, every thread) of the waited-for child processes."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, every thread) of one command."""
    cpu = _children_cpu()
    began = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return wall, _children_cpu() - cpu


def _timed_cluster(cmd: list[str], processes: int) -> tuple[float, float]:
    """Wall (first start to last exit) and CPU seconds of ``cmd`` run as a cluster of
    ``processes`` processes (``-i K -a ADDRESSES``), one worker each."""
    from bench.scale_out import free_port

    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    cpu = _children_cpu()
    began = time.monotonic()
    procs = [subprocess.Popen([*cmd, "-i", str(k), "-a", addresses], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for k in range(processes)]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - began
    if any(p.returncode != 0 for p in procs):
        raise SystemExit(f"failed: {' '.join(cmd)}\n" + "\n".join(e[-2000:] for e in errors))
    return wall, _children_cpu() - cpu


def _broker_cpu() -> float | None:
    """CPU seconds used so far by the local broker's JVM (``kafka.Kafka``), if found."""
    found = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True)
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    pids = found.stdout.split()
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if not cmdline or not cmdline[0].endswith(b"java"):
                continue  # (the JVM only: not a shell or a tool naming the class)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total if pids else None


def _marginal(n: int, half: list[tuple[float, float]], whole: list[tuple[float, float]]
              ) -> dict:
    """Events/s and CPU us/event of the second half, from the median of the paired
    differences (whole minus half of the same round: drift between rounds cancels)."""
    wall = statistics.median(w - h for (w, _), (h, _) in zip(whole, half, strict=True))
    cpu = statistics.median(w - h for (_, w), (_, h) in zip(whole, half, strict=True))
    return {"wall_s": statistics.median(w for w, _ in whole),
            "half_wall_s": statistics.median(h for h, _ in half),
            "events_per_s": n / wall, "cpu_us_per_event": 1e6 * cpu / n}


# ---------------------------------------------------------------- pass-through


PASSTHROUGH_BATCH = 5000  # the pass-through's best batch size (see the module docs)


def passthrough_main(bootstrap: str, prefix: str, batch: int = PASSTHROUGH_BATCH) -> None:
    """A Bytewax Kafka pass-through over the input topics (run in a subprocess)."""
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSinkMessage
    from bytewax.connectors.kafka import operators as kop
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    tune_gc()  # as the forewarn flow it is compared with
    topics = Topics(prefix)
    flow = Dataflow("passthrough")
    inp = kop.input("in", flow, brokers=[bootstrap], topics=topics.inputs, tail=False,
                    batch_size=batch)
    op.inspect("errs", inp.errs, lambda _s, e: print(f"error: {e}", file=sys.stderr))
    out = op.map("to_sink", inp.oks, lambda m: KafkaSinkMessage(m.key, m.value))
    kop.output("out", out, brokers=[bootstrap], topic=prefix + "passthrough")
    run_main(flow)


# ---------------------------------------------------------------- latency


class _Tail(threading.Thread):
    """Notes the arrival wall time of every output on the given topics."""

    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__(daemon=True)
        self.arrivals: list[tuple[float, dict]] = []
        self._halt = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                               for p in self._consumer.list_topics(t).topics[t].partitions])

    def run(self) -> None:
        while not self._halt.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                if msg.error() is None:
                    self.arrivals.append((time.time(), orjson.loads(msg.value())))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self._consumer.close()


def _latencies(lines: list[bytes], sent: list[float], arrivals: list[tuple[float, dict]],
               lateness: float) -> list[float]:
    from forewarn.codec import parse_time

    times, last = [], NEG_INF
    for line in lines:
        t = stream_time(line)
        if t is not None and t > last:
            last = t
        times.append(last)
    import bisect

    out = []
    for wall, rec in arrivals:
        due = parse_time(rec["event_time"]) + lateness
        i = bisect.bisect_left(times, due)
        if i < len(sent):
            out.append(wall - sent[i])
    return out


def _latency_run(bootstrap: str, config: dict, lines: list[bytes], rate: float,
                 partitions: int, lateness: float) -> dict:
    topics = _fresh(config, partitions)
    tail = _Tail(bootstrap, [topics.actions, topics.incidents, topics.care_context])
    tail.start()
    proc = subprocess.Popen(_forewarn(bootstrap, topics, "--lateness", str(lateness),
                                      "--log-level", "INFO"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until its input is assigned
        if "kafka input assigned" in line:
            break
    drain = threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True)
    drain.start()
    sent: list[float] = []
    # a run of records a day after the scenario (one alone would be held as a bad clock)
    later = max(t for t in map(stream_time, lines) if t is not None) + 86400
    far = [b'{"type":"cell","cell_id":"BENCH-FAR","site_id":"BENCH"}'] + [
        orjson.dumps({"type": "location", "subscriber_id": "ZZ", "cell_id": "BENCH-FAR",
                      "event_time": fmt_time(later + i)}) for i in range(AHEAD_QUORUM + 8)]
    report = publish_lines(config, lines, topics=topics, rate=rate, sent_at=sent)
    publish_lines(config, far, topics=topics)  # moves event time on: flushes the end
    expected = _count_outputs(lines)
    # until every expected output is in, or none came for QUIET_S (a live replay this
    # fast can differ from the in-memory run by a few outputs; see the docstring)
    deadline, seen, last_new = time.monotonic() + 120, -1, time.monotonic()
    while len(tail.arrivals) < expected and time.monotonic() < deadline:
        if len(tail.arrivals) != seen:
            seen, last_new = len(tail.arrivals), time.monotonic()
        elif time.monotonic() - last_new > QUIET_S:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    tail.stop()
    _drop(config, topics)
    lat = sorted(_latencies(lines, sent, [a for a in tail.arrivals
                                           if a[1].get("type") in ("action", "incident")],
                            lateness))
    # a care context's latency: from the complaint's own publication (it waits for the
    # event-time frontier, which trails the newest record by the reorder window)
    complaint_sent = {orjson.loads(line).get("complaint_id"): sent[i]
                      for i, line in enumerate(lines) if b'"type":"complaint"' in line
                      and i < len(sent)}
    ctx = sorted(wall - complaint_sent[rec["complaint_id"]] for wall, rec in tail.arrivals
                 if rec.get("type") == "care_context"
                 and rec.get("complaint_id") in complaint_sent)
    return {"rate_target": rate or None, "rate_published": len(lines) / report.seconds,
            "outputs": len(tail.arrivals), "expected_outputs": expected,
            "p50_ms": 1000 * _q(lat, 0.50), "p99_ms": 1000 * _q(lat, 0.99),
            "max_ms": 1000 * lat[-1] if lat else None,
            "care_contexts": len(ctx), "context_p50_ms": 1000 * _q(ctx, 0.50) if ctx else None,
            "context_p99_ms": 1000 * _q(ctx, 0.99) if ctx else None}


def _q(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(q * len(xs)))]


_outputs_cache: dict[int, int] = {}


def _count_outputs(lines: list[bytes]) -> int:
    key = id(lines)
    if key not in _outputs_cache:
        from forewarn.rules.rulebook import load_rulebook
        from forewarn.runner import run_collect

        got = run_collect(lines, load_rulebook())
        _outputs_cache[key] = len(got.actions) + len(got.incidents) + len(got.care_context)
    return _outputs_cache[key]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--sites", type=int, default=60)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--subscribers-per-cell", type=float, default=20)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--snapshots", default="1,5,10",
                    help="snapshot intervals (s) for the recovery overhead runs")
    ap.add_argument("--lateness", type=float, default=DEFAULT_LATENESS_S)
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs of each flow, on empty and full topics (medians)")
    ap.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--processes", type=int, default=1, metavar="N",
                    help="also time the flow as N processes of one worker (the input "
                         "shards, one per partition, spread over them), against 1, and "
                         "the broker's CPU in each (it shares the machine's cores)")
    ap.add_argument("--saturation-only", action="store_true",
                    help="skip the recovery and latency parts")
    ap.add_argument("--latency-only", type=float, metavar="RATE",
                    help="only the latency part, publishing at RATE records/s (and as fast "
                         "as possible): actions and incidents, and care contexts from their "
                         "complaint's publication")
    ap.add_argument("--passthrough-batch", type=int, default=PASSTHROUGH_BATCH,
                    help=f"the pass-through's batch size (default {PASSTHROUGH_BATCH})")
    ap.add_argument("--passthrough-prefix", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.passthrough_prefix:
        passthrough_main(args.bootstrap, args.passthrough_prefix, args.passthrough_batch)
        return 0
    config = {"bootstrap.servers": args.bootstrap}
    sc = simulate(ScenarioConfig(seed=11, sites=args.sites, hours=args.hours,
                                 subscribers_per_cell=args.subscribers_per_cell))
    lines = sc.lines
    n = len(lines)
    print(f"scenario: {n} records ({args.sites} sites, {args.hours:g} h, "
          f"{args.subscribers_per_cell:g}/cell), {args.partitions} partitions/topic",
          file=sys.stderr)
    res: dict = {"records": n, "partitions": args.partitions}
    if args.latency_only:
        res["latency"] = [_latency_run(args.bootstrap, config, lines, rate, args.partitions,
                                       args.lateness) for rate in (args.latency_only, 0.0)]
        print(json.dumps(res, indent=1))
        return 0

    half = _fresh(config, args.partitions, ("passthrough",))
    full = _fresh(config, args.partitions, ("passthrough",))
    publish_lines(config, lines[:n // 2], topics=half)
    publish_lines(config, lines, topics=full)
    second = n - n // 2  # records of the second half: what the marginal rate is over

    pt_cmd = [sys.executable, "-m", "bench.kafka_throughput", "--bootstrap", args.bootstrap,
              "--passthrough-batch", str(args.passthrough_batch), "--passthrough-prefix"]
    runs: dict[str, list[tuple[float, float]]] = {"half": [], "whole": [], "phalf": [],
                                                  "pwhole": []}
    cluster = args.processes > 1
    if cluster:
        runs.update({"nhalf": [], "nwhole": []})
        broker: dict[str, float] = {"one": 0.0, "n": 0.0}
    for _ in range(args.repeat):  # alternated, so drift on a shared machine hits both
        b0 = _broker_cpu() if cluster else None
        runs["half"].append(_timed(_forewarn(args.bootstrap, half, "--exit-at-end")))
        runs["whole"].append(_timed(_forewarn(args.bootstrap, full, "--exit-at-end")))
        if cluster:
            b1 = _broker_cpu()
            runs["nhalf"].append(_timed_cluster(
                _forewarn(args.bootstrap, half, "--exit-at-end"), args.processes))
            runs["nwhole"].append(_timed_cluster(
                _forewarn(args.bootstrap, full, "--exit-at-end"), args.processes))
            b2 = _broker_cpu()
            if b0 is not None and b1 is not None and b2 is not None:
                broker["one"] += b1 - b0
                broker["n"] += b2 - b1
        runs["phalf"].append(_timed([*pt_cmd, half.prefix]))
        runs["pwhole"].append(_timed([*pt_cmd, full.prefix]))
    res["forewarn"] = _marginal(second, runs["half"], runs["whole"])
    res["passthrough"] = _marginal(second, runs["phalf"], runs["pwhole"])
    res["runs"] = runs
    res["ratio"] = res["forewarn"]["events_per_s"] / res["passthrough"]["events_per_s"]
    res["cpu_ratio"] = (res["passthrough"]["cpu_us_per_event"]
                        / res["forewarn"]["cpu_us_per_event"])
    # each round's own ratio: its two flows ran within seconds of each other
    res["round_ratios"] = sorted(
        (pw[0] - ph[0]) / (w[0] - h[0]) for h, w, ph, pw in
        zip(runs["half"], runs["whole"], runs["phalf"], runs["pwhole"], strict=True))
    if cluster:
        res["forewarn_n"] = _marginal(second, runs["nhalf"], runs["nwhole"])
        res["processes"] = args.processes
        res["n_ratio"] = sorted(  # each round's N-process over 1-process rate
            (w[0] - h[0]) / (nw[0] - nh[0]) for h, w, nh, nw in
            zip(runs["half"], runs["whole"], runs["nhalf"], runs["nwhole"], strict=True))
        flows = {"one": sum(w[1] + h[1] for h, w in zip(runs["half"], runs["whole"],
                                                         strict=True)),
                 "n": sum(w[1] + h[1] for h, w in zip(runs["nhalf"], runs["nwhole"],
                                                       strict=True))}
        res["broker_cpu_share"] = {k: round(broker[k] / (broker[k] + flows[k]), 3)
                                   for k in ("one", "n") if broker[k] + flows[k] > 0}
    print(json.dumps(res, indent=1), file=sys.stderr)
    if args.saturation_only:
        _drop(config, half, full)
        print(json.dumps(res, indent=1))
        return 0

    res["recovery"] = []
    for snap in [float(s) for s in args.snapshots.split(",") if s]:
        timed = {}
        for name, topics in (("half", half), ("whole", full)):
            with tempfile.TemporaryDirectory() as rdir:
                timed[name] = [_timed(_forewarn(
                    args.bootstrap, topics, "--exit-at-end", "--recovery",
                    os.path.join(rdir, "r"), "--snapshot-interval", str(snap)))]
        res["recovery"].append({"snapshot_s": snap,
                                **_marginal(second, timed["half"], timed["whole"])})
        print(json.dumps(res["recovery"][-1]), file=sys.stderr)

    sat = res["forewarn"]["events_per_s"]
    res["latency"] = [
        _latency_run(args.bootstrap, config, lines, 0.5 * sat, args.partitions, args.lateness),
        _latency_run(args.bootstrap, config, lines, 0.0, args.partitions, args.lateness),
    ]
    print(json.dumps(res["latency"], indent=1), file=sys.stderr)
    _drop(config, half, full)
    if not args.no_append:
        _append(res, args, argv)
    print(json.dumps(res, indent=1))
    return 0


def _rate(rate: float | None) -> str:
    return f"{rate:,.0f}/s" if rate else "as fast as possible"


def _row(r: dict) -> str:
    return (f"{r['events_per_s']:,.0f} | {r['cpu_us_per_event']:.1f} | {r['wall_s']:.1f} "
            f"| {r['half_wall_s']:.1f}")


def _append(res: dict, args, argv) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
    except (OSError, StopIteration):
        model = cpu
    fw, pt = res["forewarn"], res["passthrough"]
    lat = res["latency"]
    rows = "\n".join(
        f"| {_rate(r['rate_target'])} "
        f"| {r['rate_published']:,.0f}/s | {r['outputs']}/{r['expected_outputs']} "
        f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} |" for r in lat)
    rec = "\n".join(f"| {r['snapshot_s']:g} s | {r['events_per_s']:,.0f} "
                    f"| {r['events_per_s'] / fw['events_per_s']:.2f} |"
                    for r in res["recovery"])
    text = f"""
## Kafka -> flow -> Kafka ({time.strftime('%Y-%m-%d')})

Machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, local
single-node Kafka (`forewarn broker`). Command:
`python -m bench.kafka_throughput {' '.join(argv or sys.argv[1:])}`
({res['records']:,} records, {res['partitions']} partitions per topic, 1 worker; wall times
are medians of {args.repeat} alternated runs).

| flow | events/s (saturation, marginal) | CPU us/event | wall s, whole | wall s, half |
|---|---|---|---|---|
| forewarn (`run --bootstrap --exit-at-end`) | {_row(fw)} |
| bytewax Kafka pass-through | {_row(pt)} |

Forewarn / pass-through: **{res['ratio']:.2f}x** events/s (goal >= 0.5x); CPU per event,
pass-through / Forewarn: {res['cpu_ratio']:.2f}x. Each round's own ratio (its four runs
within half a minute): {', '.join(f'{r:.2f}' for r in res['round_ratios'])}.

Event-to-output latency (actions and incidents; excludes hold-down, group wait and
the {args.lateness:g} s reorder window - see the module docstring):

| input rate | published | outputs seen | p50 ms | p99 ms | max ms |
|---|---|---|---|---|---|
{rows}

Recovery overhead (`--recovery`, saturation throughput):

| snapshot interval | events/s | vs no recovery |
|---|---|---|
{rec}
"""
    with RESULTS.open("a") as fh:
        fh.write(text)


if __name__ == "__main__":
    sys.exit(main())
