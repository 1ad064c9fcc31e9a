"""The care status service: lookup latency at a fixed request rate (goal: p99 < 20 ms at
1,000 requests/s), and how long it takes to materialise ``care.status``.

Against a real local broker (``forewarn broker start``): a fresh compacted
``care.status`` topic (3 partitions) is filled with ``--records`` ``care_status``
records (one or two incidents each, as the flow encodes them), then
``forewarn status serve`` starts as a subprocess, as in production (bearer token, its
access log on, the default log level), and the time to ``/readyz`` = 200 is noted.

The load is **open-loop**: request *i* is due at ``start + i / rate`` whatever the
answers before it, and its latency runs from that due time to the last byte of the
response, so a stall shows as the latency of every request it delays (no coordinated
omission). ``--connections`` keep-alive HTTP/1.1 connections carry the requests (a
request waits for a free connection, and that wait counts); 90 % of lookups are for an
impacted subscriber, 10 % for an unknown one. The client is a small asyncio HTTP/1.1
client (no HTTP library), in this process, sharing the machine's cores with the
service and the broker; its CPU time is reported beside the service's so a saturated
client shows. ``--warm-up`` seconds at the same rate come first and are not counted.

    .venv/bin/forewarn broker start --port 9092
    .venv/bin/python -m bench.status_latency --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from forewarn.dataflows.care import CareStatus

T0 = 1795435200.0  # 2026-11-23T10:00:00Z
TOKEN = "bench-" + uuid.uuid4().hex


def record(i: int) -> tuple[bytes, bytes]:
    """Subscriber ``i``'s key and ``care_status`` record (one or two open incidents)."""
    sid = f"SUB{i:07d}"
    site = i // 120
    incidents = tuple((f"INC-SITE{site + k:05d}-20261123T1000{k:02d}", "outage",
                       "site" if k == 0 else "cell", "North", T0 + k,
                       tuple(f"CELL{site + k:05d}-{c}" for c in range(1, 4)))
                      for k in range(1 + i % 2))
    return sid.encode(), orjson.dumps(CareStatus(sid, T0 + 60, incidents).record())


def fill(bootstrap: str, topic: str, records: int, partitions: int) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1,
                                  config={"cleanup.policy": "compact"})])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "compression.type": "lz4", "acks": "all"})
    began = time.monotonic()
    for i in range(records):
        key, value = record(i)
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit("bench: records undelivered after 60 s")
    return time.monotonic() - began


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    """Open-loop GETs over keep-alive connections; latencies from each request's due time."""

    def __init__(self, port: int, ids: list[str], unknown: float, connections: int) -> None:
        self.port, self.ids, self.unknown, self.connections = port, ids, unknown, connections
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def _worker(self, queue: asyncio.Queue, record: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while True:
            item = await queue.get()
            if item is None:
                writer.close()
                return
            due, sid, impacted = item
            writer.write(f"GET /v1/subscribers/{sid}/status HTTP/1.1\r\nHost: bench\r\n"
                         f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._error(type(exc).__name__)
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                continue
            done = time.perf_counter()
            if not head.startswith(b"HTTP/1.1 200"):
                self._error(head.split(b"\r\n", 1)[0].decode())
            elif (b'"impacted":true' in body) != impacted:
                self._error("wrong answer")
            elif record:
                self.latencies.append(done - due)

    async def run(self, rate: float, seconds: float, record: bool) -> float:
        queue: asyncio.Queue = asyncio.Queue()
        workers = [asyncio.create_task(self._worker(queue, record))
                   for _ in range(self.connections)]
        await asyncio.sleep(0.2)  # connections open
        rng = random.Random(7)
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if rng.random() < self.unknown:
                queue.put_nowait((due, f"UNKNOWN{i:07d}", False))
            else:
                queue.put_nowait((due, rng.choice(self.ids), True))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        return time.perf_counter() - start


def server_p99(metrics: str) -> str:
    """The service's own p99 of lookups, as the bucket of its histogram it falls in."""
    route = 'route="/v1/subscribers/{id}/status"'
    buckets = []
    for line in metrics.splitlines():
        if line.startswith("forewarn_status_request_duration_seconds_bucket") and route in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets:
        return "?"
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= 0.99 * total:
            return f"<= {le * 1000:g} ms"
    return "?"


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--records", type=int, default=100_000, help="impacted subscribers")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s (open loop)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds")
    ap.add_argument("--warm-up", type=float, default=3.0, help="seconds, not counted")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--unknown", type=float, default=0.1, help="share of unknown ids")
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for `forewarn status serve` (repeatable)")
    args = ap.parse_args(argv)

    topic_prefix = f"bench-status.{uuid.uuid4().hex[:8]}."
    topic = topic_prefix + "care.status"
    print(f"filling {topic} with {args.records:,} records ...", file=sys.stderr)
    fill_s = fill(args.bootstrap, topic, args.records, args.partitions)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        log = Path(tmp) / "service.log"
        cmd = [sys.executable, "-m", "forewarn.cli", "status", "serve", "--bootstrap",
               args.bootstrap, "--topic-prefix", topic_prefix, "--port", str(port),
               "--token-file", str(token_file), *args.serve_arg]
        began = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            while get(url + "/readyz")[0] != 200:
                if proc.poll() is not None:
                    raise SystemExit(f"bench: the service exited {proc.returncode}:\n"
                                     + log.read_text()[-3000:])
                time.sleep(0.05)
            ready_s = time.monotonic() - began
            rss_ready = rss_mib(proc.pid)
            ids = [f"SUB{i:07d}" for i in range(args.records)]
            load = Load(port, ids, args.unknown, args.connections)
            if args.warm_up > 0:
                asyncio.run(load.run(args.rate, args.warm_up, record=False))
            cpu0, me0 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            wall = asyncio.run(load.run(args.rate, args.seconds, record=True))
            cpu1, me1 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            metrics = get(url + "/metrics")[1].decode()
            rss_after = rss_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    lat = sorted(load.latencies)
    n_ok, n_err = len(lat), sum(load.errors.values())
    client_cpu = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}")
    print(f"command: python -m bench.status_latency {' '.join(argv or sys.argv[1:])}")
    print(f"materialise: {args.records:,} records on {args.partitions} partitions "
          f"(filled in {fill_s:.1f} s); service start to ready {ready_s:.2f} s; "
          f"RSS {rss_ready:.0f} MiB at ready, {rss_after:.0f} MiB after the load")
    print(f"load: {args.rate:,.0f} req/s target, {args.seconds:g} s, {args.connections} "
          f"keep-alive connections, {args.unknown:.0%} unknown ids")
    print(f"achieved: {n_ok / wall:,.1f} req/s answered ({n_ok:,} in {wall:.2f} s), "
          f"errors {n_err} {load.errors or ''}")
    if lat:
        print(f"latency (due time -> response): p50 {pct(lat, 0.5):.2f} ms, p95 "
              f"{pct(lat, 0.95):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, p99.9 "
              f"{pct(lat, 0.999):.2f} ms, max {lat[-1] * 1000:.2f} ms, mean "
              f"{statistics.fmean(lat) * 1000:.2f} ms")
    print(f"service's own p99 (its histogram): {server_p99(metrics)}")
    print(f"CPU: service {cpu1 - cpu0:.1f} s ({(cpu1 - cpu0) / wall:.0%} of a core), client "
          f"{client_cpu:.1f} s ({client_cpu / wall:.0%} of a core)")
    ok = bool(lat) and pct(lat, 0.99) < 20.0 and n_err == 0 \
        and n_ok / wall >= 0.98 * args.rate
    print(f"goal p99 < 20 ms at {args.rate:,.0f} req/s: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
