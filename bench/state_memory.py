"""Memory held in flow state per subscriber (goal <= 300 bytes at 1 M).

Input, generated lazily (nothing is held): ~2,500 cells (834 sites x 3), then one
``subscriber`` upsert per subscriber, then one ``location`` per subscriber on a cell
(spread over 30 min of event time, so the sites' 1 h position pruning keeps all of them).
The real flow (``forewarn.dataflows.flow.build_flow``, default rulebook, discarding sinks) runs it
in-process on one worker.

When the input is exhausted, the source does not end at once: it *holds* the flow open
(empty batches) until downstream has drained, runs ``gc.collect()`` and samples VmRSS
from /proc/self/status — the flow's state is all live then (at EOF Bytewax frees it).

* Each N runs in a fresh child process: ``state = RSS at hold - RSS before the run``.
* per subscriber = slope between the two largest N (constant costs cancel), and
  ``state / N`` for each N.
* ``--breakdown N`` (default 50 k) runs two more children with tracemalloc (N and N/2:
  the Python heap's slope) and walks the live objects (``gc.get_objects``) of the first
  at the hold: the subscriber id strings (one each, the sequencer's rows'), care state
  (``SubscriberCare`` and what it owns, or the profile rows' columns), site membership
  (the columns and index of ``SiteCorrelator.members``), the sequencer's rows (``Sequencer.heard``:
  index, latest site and time, anchors), the care keys' Python objects (``CareLogic``:
  64 shards, each a ``CareShard``: a dict and a table); the rest of the RSS is native
  (Bytewax's Rust per-key state) and allocator overhead.

    .venv/bin/python -m bench.state_memory                     # N = 0, 200k, 1M + breakdown
    .venv/bin/python -m bench.state_memory --subscribers 0 100000 --breakdown 20000
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic

from bench.flow_throughput import DiscardSink

CELLS_PER_SITE = 3
SITES = 834  # x3 = 2,502 cells
T0 = 1795413600  # 2026-11-23T06:00:00Z
#: Seconds the locations are moved from T0 (``--at-night``: to 00:00, when the gap between
#: two positions of a subscriber is credited to their night anchor, forewarn.dataflows.anchors).
_SHIFT = [0]
_ANCHORS = [True]  # --without-anchors: the flow does not learn them (FlowConfig.anchors)
_DURABLE = [False]  # --recovery: the flow with recovery on (care gates and buckets)
NIGHT_SHIFT = -6 * 3600
SPREAD_S = 1800  # locations over 30 min of event time
BATCH = 1000
EPOCH_S = 2.0  # short epochs: the hold outlasts one, so per-epoch bookkeeping is not counted

FIRST = [b"Grace", b"Oliver", b"Amelia", b"Jack", b"Isla", b"Harry", b"Ava", b"George",
         b"Mia", b"Noah", b"Sofia", b"Leo", b"Lucia", b"Hugo", b"Zofia", b"Jan"]
LAST = [b"Evans", b"Smith", b"Jones", b"Taylor", b"Brown", b"Garcia", b"Martin", b"Muller",
        b"Nowak", b"Wilson", b"Davies", b"Lopez", b"Bernard", b"Schmidt", b"Kowalski"]
LANGS = [b"en", b"en", b"en", b"es", b"fr", b"de", b"pl"]
ZONES = [b"Europe/London", b"Europe/London", b"Europe/Madrid", b"Europe/Paris",
         b"Europe/Berlin", b"Europe/Warsaw"]
SEGMENTS = [b"consumer"] * 8 + [b"business", b"vip"]
PLANS = [b"Pay As You Go", b"Unlimited 5G", b"Family Share", b"SIM Only 30GB"]


def _iso(t: int) -> bytes:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


def synthetic_lines(n: int, positions: int = 1) -> Iterator[bytes]:
    """Cells, then ``n`` upserts, then ``positions`` rounds of ``n`` locations (each
    subscriber always on the same cell) — in stream order, generated lazily."""
    cells = [b"CELL%04d-%d" % (s, c) for s in range(1, SITES + 1)
             for c in range(1, CELLS_PER_SITE + 1)]
    for cell in cells:
        site = cell[4:8]
        yield (b'{"type":"cell","cell_id":"%s","site_id":"SITE%s","region":"central",'
               b'"lat":52.1,"lon":-1.2,"technology":"lte"}' % (cell, site))
    start = _iso(T0 + _SHIFT[0])  # the upserts at the locations' time: care applies them once the
    # event-time frontier passes them (a profile from the future would be held there)
    for i in range(1, n + 1):
        sid = b"SUB%07d" % i
        first, last = FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)]
        consent = b"true" if i % 9 else b"false"
        yield (b'{"type":"subscriber","subscriber_id":"%s","op":"upsert","updated_at":"%s",'
               b'"language":"%s","timezone":"%s","segment":"%s","channels":{"sms":'
               b'{"address":"+4477%08d","consent":true},"email":{"address":'
               b'"%s.%s%d@example.com","consent":%s}},"name":"%s %s","plan":"%s",'
               b'"tenure_months":%d,"tags":["esim"]}'
               % (sid, start, LANGS[i % 7], ZONES[i % 6], SEGMENTS[i % 10], i,
                  first.lower(), last.lower(), i, consent, first, last, PLANS[i % 4], i % 200))
    times = [_iso(T0 + _SHIFT[0] + 1 + k) for k in range(SPREAD_S)]
    ncells = len(cells)
    total = max(n * positions, 1)
    for r in range(positions):
        for i in range(1, n + 1):
            t = times[(r * n + i - 1) * SPREAD_S // total]
            cell = cells[(i * 7919) % ncells]
            yield (b'{"type":"location","subscriber_id":"SUB%07d","cell_id":"%s",'
                   b'"event_time":"%s"}' % (i, cell, t))


# ---- process memory ----------------------------------------------------------------------


def proc_status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


# ---- a source that holds the flow open at the end ----------------------------------------


class _HoldingPartition(StatefulSourcePartition[tuple[str, bytes], None]):
    def __init__(self, lines: Iterator[bytes], hold_s: float, at_hold: Any):
        self._it = lines
        self._hold_s = hold_s
        self._at_hold = at_hold
        self._hold_until: float | None = None
        self._awake: datetime | None = None

    def next_batch(self) -> list[tuple[str, bytes]]:
        if self._hold_until is None:
            batch = [("synthetic", line) for _, line in zip(range(BATCH), self._it, strict=False)]
            if batch:
                return batch
            self._hold_until = time.monotonic() + self._hold_s  # input done: let it drain
        if time.monotonic() < self._hold_until:
            self._awake = datetime.now(UTC) + timedelta(milliseconds=100)
            return []
        self._at_hold()
        raise StopIteration

    def next_awake(self) -> datetime | None:
        return self._awake if self._hold_until is not None else None

    def snapshot(self) -> None:
        return None


class HoldingSource(FixedPartitionedSource[tuple[str, bytes], None]):
    def __init__(self, lines: Iterator[bytes], hold_s: float, at_hold: Any):
        self.lines, self.hold_s, self.at_hold = lines, hold_s, at_hold

    def list_parts(self) -> list[str]:
        return ["synthetic"]

    def build_part(self, step_id: str, for_part: str, resume_state: None):
        return _HoldingPartition(self.lines, self.hold_s, self.at_hold)


# ---- object walk (breakdown) ---------------------------------------------------------------


def _deep(obj: Any, seen: set[int], stop: tuple[type, ...] = ()) -> int:
    """Bytes of ``obj`` and what it owns, each object counted once across calls."""
    size = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (*stop, type)):
            continue
        seen.add(id(o))
        size += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return size


def breakdown(n: int) -> dict[str, Any]:
    """Bytes per subscriber by owner, from the live objects at the hold."""
    from forewarn.dataflows import care as care_module
    from forewarn.dataflows.care import SubscriberCare
    from forewarn.dataflows.flow import CareLogic, FlowConfig, SiteLogic
    from forewarn.dataflows.sequencer import Sequencer
    from forewarn.dataflows.site import SiteCorrelator
    from forewarn.rules.rulebook import Rulebook

    gc.collect()
    objs = gc.get_objects()
    cares = [o for o in objs if type(o) is SubscriberCare]
    logics = [o for o in objs if type(o) is CareLogic]
    sites = [o for o in objs if type(o) is SiteCorrelator]
    site_logics = [o for o in objs if type(o) is SiteLogic]
    sequencers = [o for o in objs if type(o) is Sequencer]
    del objs
    shared = (Rulebook, FlowConfig)  # configuration, shared by all keys
    seen: set[int] = set()
    out: dict[str, Any] = {"subscribers": n, "care_objects": len(cares),
                           "care_logics": len(logics), "sites": len(sites)}

    # The subscriber id strings: one per subscriber, the sequencer's rows' (``heard.sids``),
    # which the positions carry to the sites and the care messages to care.
    out["ids"] = {"subscriber id str (one, shared by rows, sites and care)":
                  sum(_deep(sid, seen) for q in sequencers for sid in q.heard.sids) / n}

    # Care state, part by part (shared interned strings are counted once, by the first).
    # A care shard keeps the subscribers it knows only the profile of as rows of columns
    # (forewarn.dataflows.profile_rows), the others as SubscriberCare objects.
    parts = {"SubscriberCare object": 0,
             "profile only: rows (id ref, profile no., since, name place)": 0,
             "profile only: names (UTF-8, one buffer per shard)": 0,
             "profile only: rows' index (row numbers by id hash)": 0,
             "profiles (Profile + channels + strings; shared, numbered)": 0,  # (a few
             # thousand shapes: constant once they have all been seen)
             "notified dict": 0, "other care fields": 0,
             "care's own id str (not the rows')": 0}
    tables = [lg.shard.profiles for lg in logics]
    out["care_known"] = sum(len(t) for t in tables)
    for lg in logics:  # (first: the columns below own no id string of their own)
        for sid in lg.shard.subscribers:
            parts["care's own id str (not the rows')"] += _deep(sid, seen)
        for sid in lg.shard.profiles.sids:
            parts["care's own id str (not the rows')"] += _deep(sid, seen)
    for t in tables:
        seen.add(id(t))  # (the table's own object: with the care keys' below)
        parts["profile only: rows (id ref, profile no., since, name place)"] += sum(
            _deep(col, seen) for col in (t.sids, t.number, t.since, t.start, t.length,
                                         t.free, t.later))
        parts["profile only: names (UTF-8, one buffer per shard)"] += _deep(t.names, seen)
        parts["profile only: rows' index (row numbers by id hash)"] += _deep(t.index, seen)
    parts["profiles (Profile + channels + strings; shared, numbered)"] += _deep(
        care_module._NUMBERED, seen, shared) + _deep(care_module._NUMBER, seen, shared)
    for c in cares:
        parts["SubscriberCare object"] += sys.getsizeof(c)
        seen.add(id(c))
        parts["profiles (Profile + channels + strings; shared, numbered)"] += _deep(
            c.profile, seen, shared)
        parts["notified dict"] += _deep(c.notified, seen, shared)
        for f in ("deleted_at", "last_notice", "drops", "last_apology_at", "complaints"):
            parts["other care fields"] += _deep(getattr(c, f, None), seen, shared)
    out["care"] = {k: v / n for k, v in parts.items()}

    # Site membership (forewarn.dataflows.members): per member a reference in the id
    # column, a cell number, a time and an evidence reference in columns, a slot or two
    # of the index; the evidence strings ("call:<id>") a member's latest call keeps.
    members = sum(len(s.members) for s in sites)
    columns = sum(sys.getsizeof(s.members.sids) + sys.getsizeof(s.members.cell)
                  + sys.getsizeof(s.members.at) + sys.getsizeof(s.members.ref)
                  for s in sites)
    member_index = sum(sys.getsizeof(s.members.index) for s in sites)
    refs = sum(_deep(r, seen) for s in sites for r in s.members.ref if r is not None)
    out["members"] = members
    out["site"] = {"members' columns (id ref, cell no., time, evidence ref)": columns / n,
                   "members' index (a dict of shared row numbers)": member_index / n,
                   "evidence strings of members' latest calls": refs / n}

    # The sequencer's rows (forewarn.dataflows.heard): per subscriber a slot or two of the
    # index (row numbers by the id's hash), a reference in the id column, a site number
    # and a time in typed arrays; the learnt anchor places are the anchor column's 16 B.
    index = sum(sys.getsizeof(q.heard.index.slots) for q in sequencers)
    latest = sum(sys.getsizeof(q.heard.sids) + sys.getsizeof(q.heard.site)
                 + sys.getsizeof(q.heard.at) for q in sequencers)
    anchors = sum(sys.getsizeof(q.heard.anchor) for q in sequencers
                  if q.heard.anchor is not None)
    out["sequencer"] = {"rows' index (row numbers by id hash, 1/3 to 2/3 full)": index / n,
                        "latest site + time (rows: id ref, site number, time)": latest / n,
                        "anchor places (the rows' anchor column)": anchors / n}

    # Care keys: without recovery a few shards (Bytewax keys), each a CareLogic holding a
    # CareShard: a dict of the subscribers with care state, and the profile rows' table
    # (its columns are counted above); per subscriber that is their share.
    shard_bytes = sum(sys.getsizeof(lg) + sys.getsizeof(lg.shard) + sys.getsizeof(lg.held)
                      + sys.getsizeof(lg.shard.subscribers) + sys.getsizeof(lg.shard.profiles)
                      for lg in logics)
    out["bytewax_python"] = {f"{len(logics)} care keys (CareLogic, CareShard, its dict "
                             "and table)": shard_bytes / n}
    out["site_logics"] = len(site_logics)
    return out


# ---- one measured run (child process) --------------------------------------------------------


def child(n: int, hold_s: float, with_breakdown: bool, positions: int = 1) -> dict[str, Any]:
    import tracemalloc

    from bytewax.testing import run_main

    from forewarn.dataflows.flow import FlowConfig, Outputs, build_flow
    from forewarn.rules.rulebook import load_rulebook

    result: dict[str, Any] = {"n": n}
    book = load_rulebook()

    def at_hold() -> None:
        gc.collect()
        result["rss_hold"] = proc_status("VmRSS")
        result["hwm_hold"] = proc_status("VmHWM")
        result["t_input"] = time.perf_counter() - t0
        if with_breakdown:
            result["traced_hold"] = tracemalloc.get_traced_memory()[0]
            result["breakdown"] = breakdown(n)

    sinks = {k: DiscardSink() for k in ("actions", "incidents", "dead_letters")}
    source = HoldingSource(synthetic_lines(n, positions), hold_s, at_hold)
    flow = build_flow(source, Outputs(**sinks), FlowConfig(book=book, anchors=_ANCHORS[0],
                                                           durable=_DURABLE[0]))
    recovery = None
    if _DURABLE[0]:  # a snapshot of every key touched, each epoch, into SQLite on disk
        import tempfile

        from bytewax.recovery import RecoveryConfig, init_db_dir

        from forewarn.malloc import keep_large_buffers_mapped
        keep_large_buffers_mapped()  # (as forewarn run --recovery does)
        store = Path(tempfile.mkdtemp(prefix="state-memory-"))
        init_db_dir(store, 1)
        recovery = RecoveryConfig(store)
    gc.collect()
    if with_breakdown:
        tracemalloc.start()
        result["traced_before"] = tracemalloc.get_traced_memory()[0]
    result["rss_before"] = proc_status("VmRSS")
    t0 = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=EPOCH_S), recovery_config=recovery)
    if recovery is not None:
        import shutil
        shutil.rmtree(recovery.db_dir, ignore_errors=True)
    result["t_total"] = time.perf_counter() - t0
    result["hwm_end"] = proc_status("VmHWM")
    return result


class _KeyLogic(StatefulBatchLogic):
    """The least per-key state Bytewax allows: one slotted object holding a count."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def on_batch(self, values: list) -> tuple[list, bool]:
        self.n += len(values)
        return [], False

    def snapshot(self) -> None:
        return None


def child_bytewax(n: int, hold_s: float) -> dict[str, Any]:
    """Bytewax's own cost per key: n keys, each holding a ``_KeyLogic``."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    result: dict[str, Any] = {"n": n, "logic_bytes": sys.getsizeof(_KeyLogic())}

    def at_hold() -> None:
        gc.collect()
        result["rss_hold"] = proc_status("VmRSS")

    flow = Dataflow("keys")
    ids = (b"SUB%07d" % i for i in range(1, n + 1))
    keyed = op.key_on("key", op.input("in", flow, HoldingSource(ids, hold_s, at_hold)),
                      lambda item: item[1].decode())
    op.output("out", op.stateful_batch("count", keyed, lambda _r: _KeyLogic()), DiscardSink())
    gc.collect()
    result["rss_before"] = proc_status("VmRSS")
    run_main(flow, epoch_interval=timedelta(seconds=EPOCH_S))
    return result


def run_child(n: int, hold_s: float, with_breakdown: bool, bytewax_only: bool = False,
              positions: int = 1) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.state_memory", "--child", str(n), "--hold-s",
           str(hold_s), "--positions", str(positions)]
    cmd += ["--at-night"] if _SHIFT[0] else []
    cmd += [] if _ANCHORS[0] else ["--without-anchors"]
    cmd += ["--recovery"] if _DURABLE[0] else []
    cmd += ["--with-breakdown"] if with_breakdown else []
    cmd += ["--bytewax-only"] if bytewax_only else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mb(b: float) -> str:
    return f"{b / 2**20:8.1f} MiB"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[0, 200_000, 1_000_000])
    ap.add_argument("--breakdown", type=int, default=50_000,
                    help="subscribers in the breakdown run (0: skip it)")
    ap.add_argument("--hold-s", type=float, default=EPOCH_S + 1.5,
                    help="seconds the source holds the flow open after the input "
                         f"(> the {EPOCH_S:g} s epoch)")
    ap.add_argument("--positions", type=int, default=1,
                    help="locations per subscriber (same cell, within 30 min; the site "
                         "keeps the latest of each)")
    ap.add_argument("--at-night", action="store_true",
                    help="locations at 00:00-00:30, not 06:00-06:30: with --positions 2 or "
                         "more, each subscriber's anchor place is learnt (its state counted)")
    ap.add_argument("--without-anchors", action="store_true",
                    help="the flow without learning anchor places (their cost by difference)")
    ap.add_argument("--recovery", action="store_true",
                    help="the flow with recovery on (a SQLite store in a temporary "
                         "directory; care gates and buckets); with --breakdown 0")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--with-breakdown", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bytewax-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bytewax-keys", type=int, default=1_000_000,
                    help="keys in the Bytewax per-key baseline (0: skip it)")
    args = ap.parse_args(argv)
    if args.at_night:
        _SHIFT[0] = NIGHT_SHIFT
    if args.without_anchors:
        _ANCHORS[0] = False
    if args.recovery:
        if args.breakdown and args.child is None:
            ap.error("--recovery walks no breakdown: add --breakdown 0")
        _DURABLE[0] = True

    if args.child is not None:
        if args.bytewax_only:
            print(json.dumps(child_bytewax(args.child, args.hold_s)))
        else:
            print(json.dumps(child(args.child, args.hold_s, args.with_breakdown,
                                   args.positions)))
        return

    from importlib.metadata import version
    print(f"python {sys.version.split()[0]}, bytewax {version('bytewax')}, 1 worker; "
          f"{SITES * CELLS_PER_SITE} cells; per subscriber: 1 upsert + {args.positions} "
          f"location(s)")
    runs = []
    for n in sorted(set(args.subscribers)):
        r = run_child(n, args.hold_s, False, positions=args.positions)
        r["state"] = r["rss_hold"] - r["rss_before"]
        runs.append(r)
        per = f"{r['state'] / n:7.1f} B/sub" if n else " " * 13
        print(f"  N={n:>9,d}: RSS before {_mb(r['rss_before'])}, at end of input "
              f"{_mb(r['rss_hold'])}, state {_mb(r['state'])} {per}; peak (VmHWM) "
              f"{_mb(r['hwm_end'])}; {(1 + args.positions) * n + SITES * 3:,d} events in "
              f"{r['t_input'] - args.hold_s:.1f} s")
    big = [r for r in runs if r["n"] > 0]
    if len(runs) >= 2:
        a, b = runs[-2], runs[-1]
        slope = (b["state"] - a["state"]) / (b["n"] - a["n"])
        hwm_slope = (b["hwm_end"] - a["hwm_end"]) / (b["n"] - a["n"])
        print(f"\nper subscriber (slope N={a['n']:,d} -> {b['n']:,d}): {slope:.0f} B "
              f"(peak RSS slope {hwm_slope:.0f} B); goal <= 300 B: "
              f"{'met' if slope <= 300 else 'NOT met'}")
    if big:
        r = big[-1]
        print(f"per subscriber at N={r['n']:,d} (state / N): {r['state'] / r['n']:.0f} B")

    if args.breakdown:
        n = args.breakdown
        r = run_child(n, args.hold_s, True, positions=args.positions)
        half = run_child(n // 2, args.hold_s, True, positions=args.positions)
        bd = r["breakdown"]
        rss = (r["rss_hold"] - r["rss_before"]) / n
        traced = (r["traced_hold"] - r["traced_before"]) / n
        # the heap's slope: what each subscriber adds, without what any N holds (caches
        # of profile shapes, the rulebook's objects, ...)
        heap_slope = ((r["traced_hold"] - r["traced_before"])
                      - (half["traced_hold"] - half["traced_before"])) / (n - n // 2)
        print(f"\nbreakdown at N={n:,d} (tracemalloc on; objects walked at the end of input):")
        print(f"  live: {bd['care_objects']:,d} SubscriberCare, {bd.get('care_known', 0):,d} "
              f"profile-only, {bd['care_logics']:,d} "
              f"CareLogic, {bd['members']:,d} site members in {bd['sites']} sites")
        total = 0.0
        for group in ("ids", "care", "site", "sequencer", "bytewax_python"):
            for k, v in bd[group].items():
                total += v
                print(f"  {group:15s} {k:58s} {v:7.1f} B")
        print(f"  {'':15s} {'sum of the walked objects':58s} {total:7.1f} B")
        print(f"  Python heap growth (tracemalloc) per subscriber: {traced:7.1f} B (heap / N at "
              f"N={n:,d}); slope N={n // 2:,d} -> {n:,d}: {heap_slope:7.1f} B")
        print(f"  RSS growth per subscriber in this run (inflated by tracemalloc's own "
              f"records): {rss:7.1f} B")
        if len(runs) >= 2:
            print(f"  => native (Bytewax Rust per-key state) + allocator overhead ~ RSS slope - "
                  f"Python heap slope = {slope - heap_slope:.0f} B")

    if args.bytewax_keys:
        k = args.bytewax_keys
        b0 = run_child(k // 5, args.hold_s, False, bytewax_only=True)
        b1 = run_child(k, args.hold_s, False, bytewax_only=True)
        per_key = ((b1["rss_hold"] - b1["rss_before"]) - (b0["rss_hold"] - b0["rss_before"])) \
            / (k - k // 5)
        print(f"\nBytewax alone: a stateful_batch step with {k // 5:,d} -> {k:,d} keys, each "
              f"logic one slotted object ({b1['logic_bytes']} B): {per_key:.0f} B per key "
              f"(RSS slope) => ~{per_key - b1['logic_bytes']:.0f} B native per key (key "
              f"string, Rust maps, malloc) on top of the logic object")

if __name__ == "__main__":
    main()
