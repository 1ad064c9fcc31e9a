"""The Forewarn dataflow: thin Bytewax operators around the pure stages.

::

    source (source, raw), or a Decoded batch             the Kafka source decodes itself
      -> decode (per batch) ........... one ("clock", [record | DeadLetter, ...]) item;
                                         with P input shards one ("clock-N", (N, [...]))
                                         per shard (forewarn.dataflows.shards)
      -> sequence   [key: "clock"]       event-time order, topology, ticks; per batch
           |        or "clock-N"         one list of messages per destination key (with
           |                             shards, a ShardBatch per site: forewarn.dataflows.merge)
           |-> unship   [key: "route-N"]     with several workers: the lists bound for
           |                             another worker's sites and care shards, one
           |                             pickled item per worker and batch, unpacked
           |                             there (forewarn.dataflows.placement) -> site, care
           |-> frontier [key: "frontier"]    one Progress per batch and shard -> Frontier
           |                             to every site, then the region keys, then every
           |                             care shard (without recovery), then dispatch,
           |                             each an epoch later
           |-> site     [key: site_id]   positions, moves, incidents, hold-down, silent
           |                             failures, fan-out; verdicts released at the next
           |                             frontier, an epoch later
           |     -> region [key: "noc-N"] incidents grouped into regional events (storms),
           |                             in event-time order up to the frontier -> incidents;
           |                             verdicts about a region's incidents, in the same
           |                             order, tagged with their regional event -> care
           |-> care     [key: care_shard(subscriber_id), or subscriber_id with recovery]
           |                             profiles, complaints; fed by site and region:
           |                             verdicts -> actions
      -> dispatch   [key: "dispatch"]    propensity score, budgets, in event-time order up
                                         to the frontier
      -> actions | incidents | dead letters (decoding's and the sequencer's)

Positions (every location and call, most of the traffic) travel as plain tuples
(:data:`~forewarn.dataflows.messages.Position`) to their cell's site only, and every stage
on their way has a short path for them; Bytewax sees a few items per input batch,
not one per record.

Snapshots: Bytewax calls ``snapshot()`` for every touched key at the end of
every epoch, even without recovery. Without recovery we return ``None``;
with it, the stage's state record (:mod:`forewarn.dataflows.records`: immutable
bytes, no per-epoch deep copy of live objects, versioned per stage, no
configuration). Resuming rebuilds each stage from its record and this run's
configuration, reading only the classes Forewarn's state is made of.
"""

from __future__ import annotations

import pickle
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from operator import itemgetter
from typing import Any, cast
from zlib import crc32

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from forewarn import metrics, tmf681
from forewarn.adapters import Adapters
from forewarn.codec import Expanded, dead_letter_dict, encode, read_input
from forewarn.dataflows.care import (
    CareContext,
    CareShard,
    CareStatus,
    Packed,
    SubscriberCare,
    Suppressed,
    care_order,
    known_of,
    order_key,
    packed_of,
)
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.frontier import FrontierTracker
from forewarn.dataflows.held import Held, flatten
from forewarn.dataflows.merge import ShardMerge
from forewarn.dataflows.messages import Decoded, Frontier, Progress, ShardBatch
from forewarn.dataflows.placement import Placement, route_keys
from forewarn.dataflows.propensity import PropensityModel
from forewarn.dataflows.records import (
    freeze_care,
    freeze_dispatch,
    freeze_frontier,
    freeze_gate,
    freeze_region,
    freeze_sequence,
    freeze_site,
    thaw_care_known,
    thaw_dispatch,
    thaw_frontier,
    thaw_gate,
    thaw_region,
    thaw_sequence,
    thaw_site,
)
from forewarn.dataflows.region import REGION_KEYS, RegionShard, region_key
from forewarn.dataflows.sequencer import Routes, Sequencer, own_key
from forewarn.dataflows.shards import ShardSource, is_context
from forewarn.dataflows.site import SiteCorrelator
from forewarn.dataflows.state import SAMPLE, check_kinds
from forewarn.logs import get_logger
from forewarn.model import Action, Complaint, DeadLetter, Incident
from forewarn.rules.reload import RulebookWatcher
from forewarn.rules.rulebook import Rulebook
from forewarn.safe_pickle import UnsafePickle

CLOCK_KEY = "clock"
DISPATCH_KEY = "dispatch"
FRONTIER_KEY = "frontier"
INF = float("inf")
_log = get_logger("forewarn.flow")


@dataclass(slots=True)
class RunResults:
    """What a run leaves besides its outputs, filled at the end of its input: the
    propensity model's snapshot (to warm-start a later run) and the model's
    progressive-validation figures. One per run, handed in through :class:`FlowConfig`;
    with several workers, the one holding the dispatch key fills it. Left empty when no
    action reached dispatch (no model was made)."""

    model: bytes | None = None
    report: dict = field(default_factory=dict)
    # each subscriber's learnt anchor sites (forewarn.dataflows.anchors): sid -> (night, work);
    # filled by the worker holding the sequencer
    anchors: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlowConfig:
    book: Rulebook
    durable: bool = False  # recovery on: snapshots must carry state
    lateness_s: float = 0.0  # reorder window for out-of-order inputs (Kafka partitions)
    tick_s: float = 15.0
    watch: RulebookWatcher | None = None  # hot reload: the rulebook in force per batch
    models: bool = True  # silent-failure detectors and the propensity model
    propensity: bytes | None = None  # warm start: an earlier run's model snapshot
    action_format: str = "contract"  # or "tmf681": TMF681 CommunicationMessages
    shards: int = 1  # input shards, each with its own sequencer (forewarn.dataflows.shards)
    anchors: bool = True  # learn each subscriber's anchor sites (forewarn.dataflows.anchors)
    results: RunResults | None = field(default=None, compare=False)  # filled at EOF

    def rulebook(self) -> Rulebook:
        return self.watch.current() if self.watch is not None else self.book

    # with recovery, a store written with a care key per subscriber (an earlier layout)
    # is resumed in that layout (its keys' state is there): forewarn.connectors.kafka_run
    care_per_subscriber: bool = False

    @property
    def care_key(self) -> Callable[[str], str]:
        """Where a subscriber's messages for care go: one of 64 keys
        (:func:`care_shard`), which hold them until the frontier passes them, then take
        them in :func:`~forewarn.dataflows.care.care_order`. Without recovery those are
        the care shards, which keep their subscribers' state too (no snapshots, few
        calls per batch). With recovery they are care gates (:class:`CareGateLogic`),
        which pass what they take on to where the state is kept
        (:attr:`care_state_key`)."""
        return care_shard

    @property
    def care_state_key(self) -> Callable[[str], str]:
        """With recovery, the key a subscriber's care state is kept under. Bytewax
        snapshots the whole state of every key touched in an epoch, and keeps ~217
        bytes of its own per key: subscribers share :data:`CARE_BUCKETS` buckets
        (:func:`care_bucket`), so that a snapshot is a bucket's hundred or so
        subscribers and a million subscribers are not a million keys (nor 64 shards,
        each snapshotted whole at every epoch). A store of a key per subscriber
        resumes as one (:attr:`care_per_subscriber`)."""
        return own_key if self.care_per_subscriber else care_bucket


class SequenceLogic(StatefulBatchLogic):
    """An input shard's sequencer. With several workers (``workers``), what it sends
    sites and care shards of another worker goes as one item per worker and batch
    (:meth:`_ship`)."""

    def __init__(self, cfg: FlowConfig, resume: bytes | None, workers: int = 1):
        self.cfg = cfg
        # with several workers: where keys are, and one key on each worker to ship to
        self.place = Placement(workers) if workers > 1 else None
        self.routes = route_keys(workers) if workers > 1 else ()
        # the reorder window, tick, anchors, shards and rulebook are this run's, never
        # the snapshot's (the watermark never goes back: a shorter window releases
        # sooner, a longer one holds more)
        if resume:
            self.seq = thaw_sequence(resume, lateness_s=cfg.lateness_s, tick_s=cfg.tick_s,
                                     book=cfg.rulebook(), anchors=cfg.anchors,
                                     shards=cfg.shards)
        else:
            self.seq = Sequencer(lateness_s=cfg.lateness_s, tick_s=cfg.tick_s)
            self.seq.learn_anchors(cfg.anchors)
            self.seq.configure(cfg.rulebook())
        self.applied = cfg.book.digest
        self.late_counted = dict(self.seq.late_by_kind)  # already in the metric
        self.reported = -INF  # the watermark last told the frontier step
        self.idle = False  # the frontier step was told this shard's input is idle

    def on_batch(self, values: list) -> tuple[list, bool]:
        """``values``: lists of decoded items (one per input batch, see :func:`_decode_batch`);
        with several shards, ``(shard, list)``."""
        t0 = time.perf_counter()
        idle = False
        if self.cfg.shards > 1:
            if self.seq.shards != self.cfg.shards:  # the first batch: which shard this is
                self.seq.shard, self.seq.shards = values[0][0], self.cfg.shards
                self.seq.nearby.announce = self.seq.shard == 0
            idle = all(batch is None for _, batch in values)  # (an idle source, nothing more)
            values = [batch for _, batch in values if batch is not None]
        book = self.cfg.rulebook()
        if book.digest != self.applied:  # the known point where a reload takes effect
            self.applied = book.digest
            self.seq.configure(book)
            _log.info("rulebook in force", extra={"rulebook": book.name, "version": book.version,
                                                  "digest": book.digest,
                                                  "from_watermark": self.seq.watermark})
        late = self.seq.late
        routes = self._routes()
        self.seq.take_batch(values, routes)
        out = _bundle(routes, ordered=self.seq.late == late, shard=self._shard())
        self._progress(routes, out, idle=idle)
        if self.place is not None:
            out = self._ship(out)
        _shard_gauges(self.seq.shard, self.seq.watermark, len(self.seq.ahead),
                      self.seq.nearby.unwatched)
        if self.seq.late_by_kind != self.late_counted:
            self._count_late()
        _SEQ_BATCH.observe(time.perf_counter() - t0)
        return out, False

    def _routes(self) -> Routes:
        return Routes(self.cfg.care_key)

    def _shard(self) -> tuple[int, float] | None:
        """With several shards, sites take ``(shard, watermark)`` with each list."""
        if self.cfg.shards == 1:
            return None
        mark = self.seq.watermark
        return self.seq.shard, (-INF if mark is None else mark)

    def _progress(self, routes: Routes, out: list, end: bool = False,
                  idle: bool = False) -> None:
        """One :class:`Progress` per batch for the frontier step, when there is news:
        sites that got messages (their verdicts wait for a frontier), a new watermark, the
        shard's input found idle, or back from idle."""
        mark = self.seq.watermark
        if mark is None:
            mark = -INF
        if routes.sites or mark > self.reported or end or idle != self.idle:
            self.reported, self.idle = mark, idle
            out.append(("frontier", [(FRONTIER_KEY, Progress(self.seq.shard, mark,
                                                              tuple(routes.sites), end,
                                                              idle))]))

    def _ship(self, out: list) -> list:
        """The lists of a batch bound for sites and care shards (or gates) of another
        worker, as one ``("ship", [(route key, bytes)])`` per worker: one
        pickle for all of them, where Bytewax would pickle each list twice (once to
        measure it) and each message shared by several lists (a tick) once per list.
        The ``unship`` step on that worker unpacks them (:func:`_unship`), so the
        site's and care's own exchange is local there.

        Where a key is comes from :mod:`~forewarn.dataflows.placement`, and this worker
        is the one of this sequencer's key; a wrong guess would cost a second hop, not
        an output: a site's or care key's lists from one shard all take one way, each
        in its epoch."""
        place = self.place
        assert place is not None
        here = place(shard_key(self.seq.shard) if self.cfg.shards > 1 else CLOCK_KEY)
        away: dict[int, list] = {}
        kept: list = []
        for stage, items in out:
            if stage != "site" and stage != "care":
                kept.append((stage, items))
                continue
            mine: list = []
            for item in items:
                w = place(item[0])
                if w == here:
                    mine.append(item)
                    continue
                bound = away.get(w)
                if bound is None:
                    bound = away[w] = []
                if not bound or bound[-1][0] != stage:
                    bound.append((stage, []))
                bound[-1][1].append(item)
            if mine:
                kept.append((stage, mine))
        for w, bound in away.items():
            kept.append(("ship", [(self.routes[w],
                                   pickle.dumps(bound, protocol=pickle.HIGHEST_PROTOCOL))]))
        return kept

    def _count_late(self) -> None:
        for kind, n in self.seq.late_by_kind.items():
            new = n - self.late_counted.get(kind, 0)
            if new > 0:
                metrics.LATE_RECORDS.labels(source=metrics.TOPIC_FOR_TYPE[kind]).inc(new)
        self.late_counted = dict(self.seq.late_by_kind)

    def on_eof(self) -> tuple[list, bool]:
        routes = self._routes()
        self.seq.finish(routes)
        _shard_gauges(self.seq.shard, self.seq.watermark, len(self.seq.ahead),
                      self.seq.nearby.unwatched)
        if self.cfg.results is not None and self.seq.anchors is not None:
            self.cfg.results.anchors.update(self.seq.anchors.table())  # (each shard's own)
        out = _bundle(routes, shard=self._shard())
        self._progress(routes, out, end=True)
        if self.place is not None:
            out = self._ship(out)
        return out, False

    def snapshot(self) -> bytes | None:
        if not self.cfg.durable:
            return None
        metrics.SNAPSHOT_TIMESTAMP.set(time.time())
        return freeze_sequence(self.seq)


class SiteLogic(StatefulBatchLogic):
    """A site's correlator, plus an epoch-delayed outbox for subscriber verdicts.

    A verdict for time T is decided the moment the site's event time passes T,
    but it is *released* only in a later Bytewax epoch than the one it was
    decided in, when the frontier step's :class:`Frontier` arrives
    (:mod:`forewarn.dataflows.frontier`). Bytewax applies a stateful step's input in epoch
    order, so by the time a subscriber sees the verdict it has every record (profile,
    complaint) the sequencer sent before it, on whichever worker — the same outputs
    with any worker count. ``snapshot()`` is Bytewax's end-of-epoch call for every key
    touched in the epoch, so it is where the epoch counter moves on.

    A :class:`Frontier` also fires the deadlines before it: every record before it has
    been delivered, so what they decide is what the next record would have decided,
    and a frontier arrives in a later epoch than those records, so its verdicts go
    out at once, as do outbox verdicts about a time before it, whenever decided.
    """

    def __init__(self, cfg: FlowConfig, resume: bytes | None):
        self.cfg = cfg
        self.epoch = 0
        self.outbox: list[tuple[int, Any]] = []  # (epoch decided, verdict)
        self.site: SiteCorrelator | None = None
        self.merge = ShardMerge(cfg.shards) if cfg.shards > 1 else None
        if resume:
            self.site, pending, self.merge = thaw_site(
                resume, book=cfg.rulebook(), detect=cfg.models, shards=cfg.shards)
            self.outbox = [(-1, v) for v in pending]  # decided before the snapshot

    def _release(self, frontier: float) -> list:
        """Verdicts decided in an earlier epoch, and those about a time before the
        frontier (every record before it reached care in an earlier epoch)."""
        epoch, outbox = self.epoch, self.outbox
        ready = [v for e, v in outbox if e < epoch or v[1].at < frontier]
        if ready:
            self.outbox = [(e, v) for e, v in outbox if not (e < epoch or v[1].at < frontier)]
        return ready

    def on_batch(self, values: list) -> tuple[list, bool]:
        """``values``: ``(site_id, [message, ...])``, one per sequencer batch, and
        ``(site_id, Frontier)`` from the frontier step."""
        out: list = []
        site = self.site
        if site is None:
            if all(type(msgs) is Frontier for _, msgs in values):
                return out, False  # (a site the frontier step knows of from before a resume)
            site = self.site = SiteCorrelator(site_id=values[0][0], book=self.cfg.book,
                                              detect=self.cfg.models)
        site.book = self.cfg.rulebook()
        merge = self.merge
        for _, msgs in values:
            if type(msgs) is Frontier:
                if merge is not None:  # every shard is past it: apply what is before it
                    self._apply(merge.frontier(msgs.at), out)
                out += self._release(msgs.at)  # (a new outbox list)
                out += site.settle(msgs.at)
                continue
            if merge is not None:
                msgs = merge.take(msgs)
            self._apply(msgs, out)
        return _via_region(out), False

    def _apply(self, msgs: list, out: list) -> None:
        """Messages in the site's order: incidents out at once, verdicts to the outbox."""
        assert self.site is not None
        epoch, outbox = self.epoch, self.outbox
        for item in self.site.handle_batch(msgs):
            if item[0] == "care":
                outbox.append((epoch, item))
            else:
                out.append(item)

    def on_eof(self) -> tuple[list, bool]:
        out: list = []
        if self.merge is not None and self.merge.pending and self.site is not None:
            self._apply(self.merge.frontier(INF), out)  # (the last frontier applied them)
        out += [v for _, v in self.outbox]
        self.outbox = []
        return _via_region(out), False

    def snapshot(self) -> bytes | None:
        self.epoch += 1
        if not self.cfg.durable:
            return None
        return freeze_site(self.site, [v for _, v in self.outbox], self.merge)


def _unship(_: None, shipped: bytes) -> tuple[None, list]:
    """The ``unship`` step (no state): a worker's share of a sequencer batch
    (:meth:`SequenceLogic._ship`) back into the sequencer's ``(stage, [item, ...])``."""
    return None, pickle.loads(shipped)


def _via_region(out: list) -> list:
    """A site's output with its verdicts about an incident of a known region bundled for
    the region step, which passes them on to care in event-time order with the region's
    incidents, tagged with the regional event of their incident
    (:mod:`forewarn.dataflows.region`): one ``("region", (region, [verdict, ...]))`` item
    per region instead of a ``("care", verdict)`` item each. A site's verdicts all
    carry its region: they all take one way."""
    bundles: dict[str, list] | None = None
    kept: list = []
    for item in out:
        if item[0] == "care":
            v = item[1]
            facts = getattr(v, "facts", None)
            region = facts.region if facts is not None else getattr(v, "region", None)
            if region is not None:
                if bundles is None:
                    bundles = {}
                box = bundles.get(region)
                if box is None:
                    bundles[region] = [v]
                else:
                    box.append(v)
                continue
        kept.append(item)
    if bundles is None:
        return out
    return kept + [("region", bundle) for bundle in bundles.items()]


def _to_care(verdicts: list, care_key: Callable[[str], str]) -> list[tuple[str, list]]:
    """Verdicts the region step passed on, one list per care key, each in
    :func:`~forewarn.dataflows.care.care_order` (the region releases a time's
    restorations before its hold-downs; care applies what the frontier passed in that
    order, and a list is taken whole)."""
    boxes: dict[str, list] = {}
    for v in verdicts:
        key = care_key(v.subscriber_id)
        box = boxes.get(key)
        if box is None:
            boxes[key] = [v]
        else:
            box.append(v)
    for box in boxes.values():
        if len(box) > 1:
            box.sort(key=care_order)
    return list(boxes.items())


class FrontierLogic(StatefulBatchLogic):
    """The frontier step (one key): the shards' :class:`Progress`, one per batch each, in;
    :class:`Frontier` out to every site and to dispatch, each an epoch after what it
    rests on (:mod:`forewarn.dataflows.frontier`). Bytewax calls ``snapshot()`` at the end of
    every epoch this key took part in, ``on_notify`` included, which is how it counts
    epochs; it asks to be called again while something is owed."""

    POLL = timedelta(milliseconds=20)

    def __init__(self, cfg: FlowConfig, resume: bytes | None):
        self.cfg = cfg
        fresh = FrontierTracker(shards=cfg.shards, stages=("site", "region", "care", "dispatch"),
                                care_keys=_SHARD_KEYS)  # (care shards, or gates)
        fresh.region_keys = REGION_KEYS
        self.tracker = thaw_frontier(resume, fresh) if resume else fresh

    def on_batch(self, values: list) -> tuple[list, bool]:
        out = self.tracker.due()  # before taking: what is owed rests on earlier epochs
        for progress in values:
            self.tracker.take(progress)
        return out, False

    def notify_at(self) -> datetime | None:
        return datetime.now(UTC) + self.POLL if self.tracker.pending else None

    def on_notify(self) -> tuple[list, bool]:
        return self.tracker.due(), False

    def on_eof(self) -> tuple[list, bool]:
        return self.tracker.finish(), False

    def snapshot(self) -> bytes | None:
        self.tracker.end_epoch()
        return freeze_frontier(self.tracker) if self.cfg.durable else None


class DispatchLogic(StatefulBatchLogic):
    """Budgets over every action (one key; actions are few next to events)."""

    def __init__(self, cfg: FlowConfig, resume: bytes | None):
        self.cfg = cfg
        if resume:
            self.dispatch = thaw_dispatch(resume)  # (its model goes on: state, not a warm start)
        elif cfg.propensity is not None:
            self.dispatch = Dispatcher(model=PropensityModel.warm_start(cfg.propensity))
        else:
            self.dispatch = Dispatcher()

    def on_batch(self, values: list) -> tuple[list, bool]:
        """``values``: care's outputs, one each, and the frontier step's :class:`Frontier`."""
        return self.dispatch.take(values, self.cfg.rulebook(), self.cfg.models), False

    def on_eof(self) -> tuple[list, bool]:
        out = self.dispatch.finish(self.cfg.rulebook(), self.cfg.models)
        if self.cfg.results is not None:
            self.cfg.results.report = self.dispatch.model.report()
            self.cfg.results.model = self.dispatch.model.to_bytes()
        return out, False

    def snapshot(self) -> bytes | None:
        return freeze_dispatch(self.dispatch) if self.cfg.durable else None


class RegionLogic(StatefulBatchLogic):
    """One region key's :class:`~forewarn.dataflows.region.RegionShard`: the site
    incidents of its regions, one message per incident change, the sites' verdicts about
    them (one list per site and batch), and the frontier step's :class:`Frontier`; out:
    the incidents for the NOC, site incidents with their ``parent_id`` and
    ``regional_outage`` parents, and one list of verdicts for care, tagged with their
    regional event, in event-time order up to the frontier
    (:mod:`forewarn.dataflows.region`)."""

    def __init__(self, cfg: FlowConfig, resume: bytes | None):
        self.cfg = cfg
        self.shard = thaw_region(resume) if resume else RegionShard()

    def _terms(self) -> tuple[int | None, float]:
        corr = self.cfg.rulebook().correlation
        return corr.storm_sites, corr.storm_window_s

    def on_batch(self, values: list) -> tuple[list, bool]:
        return self.shard.take(values, *self._terms()), False

    def on_eof(self) -> tuple[list, bool]:
        return self.shard.finish(*self._terms()), False

    def snapshot(self) -> bytes | None:
        return freeze_region(self.shard) if self.cfg.durable else None


class CareGateLogic(StatefulBatchLogic):
    """With recovery, one of the 64 care gates: the messages for care of its
    subscribers (a care shard's, :func:`care_shard`), held until the frontier passes
    them (:class:`~forewarn.dataflows.held.Held`), then passed on in
    :func:`~forewarn.dataflows.care.care_order` to the keys their state is kept under
    (:attr:`FlowConfig.care_state_key`), one list per key.

    Care keeps state per bucket of subscribers with recovery, and a bucket cannot hear
    of every frontier (it would be snapshotted at every epoch); the gates can, and
    their state is only what is in flight. So care takes a subscriber's messages from
    several sites and from the sequencer in one order, whatever the arrival order, as
    care shards do without recovery: ``(key, (frontier, [item, ...]))`` out, an item a
    message or a :class:`~forewarn.dataflows.held.ProfileRun`; a key takes its gate's
    lists in the order of their frontiers (:func:`_in_order`), each after the one before.
    """

    def __init__(self, cfg: FlowConfig, resume: bytes | None) -> None:
        self.cfg = cfg
        self.held = thaw_gate(resume) if resume else Held()

    def on_batch(self, values: list) -> tuple[list, bool]:
        out: list = []
        held = self.held
        for msgs in values:
            if type(msgs) is Frontier:
                out += self._release(msgs.at)
            else:
                held.add(msgs)
        return out, not held

    def _release(self, frontier: float) -> list[tuple[str, tuple[float, list]]]:
        return [(key, (frontier, items)) for key, items in
                self.held.take_runs_before(frontier, self.cfg.care_state_key)]

    def on_eof(self) -> tuple[list, bool]:
        return self._release(INF), False

    def snapshot(self) -> bytes:
        return freeze_gate(self.held)


class CareKeys:
    """The care step of a run: builds each care key's logic (Bytewax's builder, given a
    key's snapshot or None), and holds what they all share, the run's configuration and
    whether the flow has a ``care.status`` output.

    Every key is a :class:`CareLogic`: a shard of the subscribers, or with recovery a
    bucket of them (:attr:`FlowConfig.care_state_key`). A store written with a key per
    subscriber resumes with one: each is a :class:`CareKeyLogic`, their care state
    alone (a snapshot of several subscribers or with held messages, written by another
    layout of the keys, resumes as a :class:`CareLogic`)."""

    __slots__ = ("cfg", "status")

    def __init__(self, cfg: FlowConfig, status: bool = False) -> None:
        self.cfg = cfg
        self.status = status  # emit CareStatus (the flow has a care.status output)

    def __call__(self, resume: bytes | None) -> CareLogic | CareKeyLogic:
        per_subscriber = self.cfg.durable and self.cfg.care_per_subscriber
        if not resume:
            if per_subscriber:
                return CareKeyLogic(self)
            return CareLogic(self, CareShard(), [] if self.cfg.durable else Held())
        saved, held = thaw_care_known(resume)
        if per_subscriber and len(saved) <= 1 and not held:
            for sid, care in saved.items():
                return CareKeyLogic(self, sid, packed_of(care) if isinstance(care, tuple)
                                    else care)
            return CareKeyLogic(self)
        shard = CareShard()
        shard.restore(saved)
        return CareLogic(self, shard, held if self.cfg.durable else Held(held))


class CareLogic(StatefulBatchLogic):
    """One care key's :class:`~forewarn.dataflows.care.CareShard`: a shard of the
    subscribers (see :func:`care_shard`), or with recovery a bucket of them
    (:func:`care_bucket`).

    Without recovery, ``values`` are lists of messages (one per sequencer batch, one per
    verdict), each in :func:`~forewarn.dataflows.care.order_key` order already, and
    frontiers: care shards hold the messages (``held``, a
    :class:`~forewarn.dataflows.held.Held`) until the frontier step's :class:`Frontier`
    says every message before a time has arrived, then take those in
    :func:`~forewarn.dataflows.care.care_order`: a subscriber hears of verdicts from
    several sites, and what care decides from several (a drop apology, cooldowns and
    caps across incidents) must not depend on which arrived first. With recovery, a
    bucket takes what its care gate (:class:`CareGateLogic`) passes on, in that order
    already (``held``: a list, the held messages of a record of another layout, each
    applied with the gate's list of the first frontier past it).
    """

    __slots__ = ("keys", "shard", "held")

    def __init__(self, keys: CareKeys, shard: CareShard, held: Held | list) -> None:
        self.keys = keys
        self.shard = shard
        self.held = held

    def on_batch(self, values: list) -> tuple[list, bool]:
        keys = self.keys
        book = keys.cfg.rulebook()
        if keys.cfg.durable:
            if not self.held:
                return (self.shard.handle_batch(_in_order(values), book, keys.status),
                        not self.shard)
            return self._with_held(values, book)
        out: list = []
        held = self.held
        assert isinstance(held, Held)  # (without recovery)
        for msgs in values:
            if type(msgs) is Frontier:
                out += self._take_before(msgs.at, book)
            else:
                held.add(msgs)
        return out, not self.shard and not held

    def _with_held(self, values: list[tuple[float, list]], book: Rulebook
                   ) -> tuple[list, bool]:
        """With recovery, a record of another layout's held messages: each goes in with
        the gate's list of the first frontier past it, in care order."""
        held = self.held
        pending = held if isinstance(held, list) else held.messages()
        out: list = []
        for frontier, items in sorted(values, key=itemgetter(0)):
            ready = [m for m in pending if m.at < frontier]
            if ready:
                pending = [m for m in pending if not m.at < frontier]
                msgs: Iterable = sorted([*ready, *flatten(items)], key=care_order)
            else:
                msgs = flatten(items)
            out += self.shard.handle_batch(msgs, book, self.keys.status)
        self.held = pending
        return out, not self.shard and not pending

    def _take_before(self, frontier: float, book: Rulebook) -> list:
        assert isinstance(self.held, Held)  # (without recovery)
        ready = self.held.take_before(frontier)
        if not ready:
            return []
        ready.sort(key=care_order)
        return self.shard.handle_batch(ready, book, self.keys.status)

    def on_eof(self) -> tuple[list, bool]:
        if self.keys.cfg.durable:  # (a record's held messages still held: all of them)
            return (self._with_held([(INF, [])], self.keys.cfg.rulebook())[0]
                    if self.held else []), False
        return self._take_before(INF, self.keys.cfg.rulebook()), False

    def snapshot(self) -> bytes | None:
        if not self.keys.cfg.durable:
            return None
        held = self.held
        return freeze_care(self.shard, held if isinstance(held, list) else held.messages())


class CareKeyLogic:
    """One subscriber's care key, with recovery on a store written with a care key per
    subscriber (:attr:`FlowConfig.care_per_subscriber`, earlier versions' layout): their
    care state and nothing around it (no shard, dict or list: at a million keys those
    cost more than the state). The state is kept as a care shard keeps it, a profile
    only :data:`~forewarn.dataflows.care.Packed` in one bytes object
    (:meth:`~forewarn.dataflows.care.SubscriberCare.compact`), and messages are applied
    as :meth:`~forewarn.dataflows.care.CareShard.handle_batch` applies them, the lists
    of the key's care gate merged in care order. ``sid``: the id string of the messages
    (or of the snapshot).

    A :class:`StatefulBatchLogic` by its methods, which Bytewax calls by name, and
    registered as one, but not a subclass: that class has no ``__slots__``, so each of
    its instances would carry a ``__dict__`` and a ``__weakref__`` (40 bytes a key)."""

    __slots__ = ("keys", "sid", "kept")

    def __init__(self, keys: CareKeys, sid: str | None = None,
                 kept: SubscriberCare | Packed | None = None) -> None:
        self.keys = keys
        self.sid = sid
        self.kept = kept

    def on_batch(self, values: list) -> tuple[list, bool]:
        keys = self.keys
        book = keys.cfg.rulebook()
        msgs = _in_order(values)
        kept = self.kept
        care = SubscriberCare.of(kept) if isinstance(kept, bytes) else kept
        out: list = []
        sid = self.sid
        for msg in msgs:
            if care is None:
                care = SubscriberCare()
            if sid is None:
                sid = self.sid = msg.subscriber_id
            out += care.handle(msg.subscriber_id, msg, book, keys.status)
            if care.empty():
                care = None  # (forgotten, as a shard forgets them: the next starts anew)
        self.kept = None if care is None else care.compact()
        return out, self.kept is None

    def on_notify(self) -> tuple[list, bool]:
        return [], False

    def on_eof(self) -> tuple[list, bool]:
        return [], False

    def notify_at(self) -> datetime | None:
        return None

    def snapshot(self) -> bytes | None:
        kept, sid = self.kept, self.sid
        if kept is None or sid is None:
            return freeze_care({}, [])
        return freeze_care({sid: known_of(kept) if isinstance(kept, bytes) else kept}, [])


StatefulBatchLogic.register(CareKeyLogic)


def _in_order(values: list[tuple[float, list]]) -> Iterator:
    """A care key's lists from its gate (with recovery), as the messages they hold in
    care order: each list is in care order, and holds what was before its frontier and
    not before the one of the list before it, so the lists in the order of their
    frontiers are in care order too (however Bytewax delivered them)."""
    if len(values) > 1:
        values = sorted(values, key=itemgetter(0))
    return chain.from_iterable(flatten(items) for _, items in values)


#: Each stateful step's logic, by the stage name its snapshots carry.
_LOGICS: dict[str, Callable[[FlowConfig, bytes], Any]] = {
    "sequence": SequenceLogic, "site": SiteLogic, "frontier": FrontierLogic,
    "region": RegionLogic, "gate": CareGateLogic,
    "care": lambda cfg, resume: CareKeys(cfg)(resume), "dispatch": DispatchLogic,
}


def check_resume(cfg: FlowConfig, stage: str, snapshot: bytes) -> None:
    """Raise :class:`~forewarn.safe_pickle.UnsafePickle` (saying what is wrong) unless
    step ``stage`` of a run with ``cfg`` can resume from ``snapshot``: the step's logic
    is rebuilt from it as the resumed run would build it, and the state it holds has
    fields of their declared kinds (:func:`~forewarn.dataflows.state.check_kinds`). Run
    on every snapshot before the flow starts, so that a record of the wrong shape is a
    refusal that names it, not a failure inside the running flow."""
    make = _LOGICS.get(stage)
    if make is None:
        return  # (sources and sinks: their own snapshots)
    try:
        logic = make(cfg, snapshot)
        for what, state in _state_of(logic):
            check_kinds(state, what)
    except UnsafePickle:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError,
            ArithmeticError, struct.error) as exc:
        raise UnsafePickle(f"its {stage} state does not fit this Forewarn: {exc}") from None


def _state_of(logic: Any) -> list[tuple[str, Any]]:
    """The state objects a stateful step's logic holds, named."""
    if isinstance(logic, SequenceLogic):
        return [("sequencer", logic.seq)]
    if isinstance(logic, SiteLogic):
        return [("site", logic.site), ("shards' merge", logic.merge)]
    if isinstance(logic, FrontierLogic):
        return [("frontier", logic.tracker)]
    if isinstance(logic, RegionLogic):
        return [("region", logic.shard)]
    if isinstance(logic, CareLogic):  # (profile tuples: checked as they are thawed)
        logic.shard.profiles.check()
        for sid, care in islice(logic.shard.subscribers.items(), SAMPLE):
            if not isinstance(sid, str) or not isinstance(care, SubscriberCare):
                raise TypeError(f"care holds a {type(care).__name__} under a "
                                f"{type(sid).__name__} key")
        return []
    if isinstance(logic, CareGateLogic):  # (its messages: checked as they are thawed)
        return []
    if isinstance(logic, CareKeyLogic):
        if logic.kept is not None and (not isinstance(logic.sid, str) or not isinstance(
                logic.kept, (SubscriberCare, bytes))):
            raise TypeError(f"care holds a {type(logic.kept).__name__} under a "
                            f"{type(logic.sid).__name__} key")
        return []
    return [("dispatch", logic.dispatch)]


# ---- stateless steps ---------------------------------------------------------------


def _encoder_of(kind: type[CareContext] | type[CareStatus]
                ) -> Callable[[Any], tuple[str, bytes] | None]:
    """``(subscriber_id, JSON line)`` of a care output of ``kind`` (its ``record()``)."""
    def encode_one(item: Any) -> tuple[str, bytes] | None:
        if type(item) is not kind:
            return None
        return item.subscriber_id, orjson.dumps(item.record())
    return encode_one


#: Each input shard's sequencer gauges in this process: shard -> (watermark, records
#: held ahead, outages unwatched). The process's gauges are over its shards: the least
#: watermark (its event time), the records held (a sum), the outages unwatched (each
#: shard follows every outage: the most). The sequencers of a process's shards run on
#: its worker threads, each whenever Bytewax calls it: one at a time under
#: ``_SHARDS_LOCK``, or a shard's first report (a new key) could land while another
#: thread walks the table ("dictionary changed size during iteration", in the flow's
#: sequence step).
_SHARDS_HERE: dict[int, tuple[float | None, int, int]] = {}
_SHARDS_LOCK = threading.Lock()


def _shard_gauges(shard: int, watermark: float | None, held: int, unwatched: int) -> None:
    with _SHARDS_LOCK:
        _SHARDS_HERE[shard] = (watermark, held, unwatched)
        marks = [m for m, _, _ in _SHARDS_HERE.values() if m is not None]
        if marks:
            metrics.WATERMARK.set(min(marks))
        metrics.HELD_AHEAD.set(sum(h for _, h, _ in _SHARDS_HERE.values()))
        metrics.OUTAGES_UNWATCHED.set(max(u for _, _, u in _SHARDS_HERE.values()))


def _bundle(routes: Routes, ordered: bool = True, shard: tuple[int, float] | None = None
            ) -> list:
    """One item per destination stage per batch, holding one list of messages per key.

    ``("site", [(site_id, (site_id, [msg, ...])), ...])``, ``("care", [(care key,
    [msg, ...]), ...])``, ``("dead", [DeadLetter, ...])``: already keyed for their
    stateful steps, so Bytewax sees a few items per batch instead of one per message.
    Dead letters the sequencer refused are counted here; decoding's were counted
    when decoding failed.

    With several shards (``shard``: this one's index and watermark), a site's list comes
    as a :class:`~forewarn.dataflows.messages.ShardBatch` for the site to merge.

    A subscriber's list is in :func:`~forewarn.dataflows.care.order_key` order, which care
    relies on: the sequencer releases in event-time order (records at equal times
    commute for care), so only a batch with late records (``ordered=False``) sorts.
    """
    out: list[tuple[str, list]] = []
    if routes.sites:
        if shard is None:
            out.append(("site", [(k, (k, v)) for k, v in routes.sites.items()]))
        else:
            n, mark = shard
            out.append(("site", [(k, (k, ShardBatch(n, mark, v)))
                                 for k, v in routes.sites.items()]))
    if routes.cares:
        if not ordered:
            for box in routes.cares.values():
                box.sort(key=order_key)
        out.append(("care", list(routes.cares.items())))
    if routes.dead:
        for d in routes.refused:
            _count_refused(d)
        out.append(("dead", routes.dead))
    return out


#: Care keys without recovery: subscribers hashed into this many shards (crc32 of the
#: id: the same on every process and run). A shard is one state for Bytewax, so a batch
#: costs a few calls instead of one per subscriber touched.
CARE_SHARDS = 64
_SHARD_KEYS = tuple(f"care-{i:02d}" for i in range(CARE_SHARDS))


#: Care keys with recovery: subscribers hashed into this many buckets. Bytewax snapshots
#: a key's whole state at the end of every epoch it was touched in, so a bucket should be
#: small (at a million subscribers, 122 each: a snapshot of a few kB); and it keeps ~217
#: bytes of its own per key, so a key per subscriber costs more than their care state.
#: Part of a recovery store's layout: changing it strands the state of the old buckets.
CARE_BUCKETS = 8192
_BUCKET_KEYS = tuple(f"care-b{i:04d}" for i in range(CARE_BUCKETS))
# a bucket's subscribers are all of one care gate (the same crc32, modulo a multiple of
# the gates' count): a bucket takes one gate's lists, in the order of their frontiers


def care_bucket(subscriber_id: str) -> str:
    """The care key of a subscriber with recovery.

    >>> care_bucket("SUB0000001")
    'care-b...'
    """
    return _BUCKET_KEYS[crc32(subscriber_id.encode()) % CARE_BUCKETS]


def is_care_bucket(key: str) -> bool:
    """Whether a care key of a recovery store is a bucket (else: a subscriber's own).

    >>> is_care_bucket("care-b0042"), is_care_bucket("SUB0000001")
    (True, False)
    """
    return len(key) == 10 and key.startswith("care-b") and key[6:].isdigit()


assert CARE_BUCKETS % CARE_SHARDS == 0, "a bucket's subscribers must share one care gate"


def care_shard(subscriber_id: str) -> str:
    """The care key of a subscriber when state is not snapshotted.

    >>> care_shard("SUB0000001")
    'care-...'
    """
    return _SHARD_KEYS[crc32(subscriber_id.encode()) % CARE_SHARDS]


def _decode_input(items: list, adapters: Adapters | None, shards: int) -> list:
    """The decode step: :func:`_decode_batch` of each shard's items (a worker's batch
    holds items of every source partition it reads, each partition's in order)."""
    if shards == 1:
        return _decode_batch(items, adapters)
    parts: dict[int | None, list] = {}
    for item in items:
        shard = item.shard if type(item) is Decoded else item[0].shard
        parts.setdefault(shard, []).append(item)
    out: list = []
    for part in parts.values():
        out += _decode_batch(part, adapters)
    return out


def _decode_batch(items: list, adapters: Adapters | None = None) -> list:
    """Decode an input batch into one item for the sequencer: ``[("clock", decoded)]``;
    with several shards (items of one), ``[("clock-N", (N, decoded))]``.

    ``adapters``: the rulebook's tables for operators' alarm feeds (VES, TMF642);
    a VES batch stands for several records, each with its own raw event.

    Items are ``(source, raw)``, or a :class:`~forewarn.dataflows.messages.Decoded` batch from
    a source that decoded them already (the Kafka source needs each record's time to
    merge). ``decoded`` holds ``(source, raw, record, at)`` (``at``: :func:`stream_at`,
    read once here for the sequencer) and dead letters. Counted once per kind per
    batch; the ingest clock notes the batch's latest stream time (every record of a
    batch arrived at the same moment).
    """
    out: list = []
    own = Decoded()  # the tally of what this step decodes itself, as a source's
    accepted = own.accepted
    latest = None
    if items and type(items[0]) is Decoded:
        shard = items[0].shard  # a batch is one shard's
    else:
        first = items[0][0] if items else None
        shard = first.shard if type(first) is ShardSource else None
    for item in items:
        if type(item) is Decoded:
            _count_decoded(item)
            out += item.items
            continue
        rec, kind, at = read_input(item[1], item[0], adapters)
        if shard is not None and is_context(item[0]):
            # another shard's to report and count: kept only when it decodes
            if kind is Expanded:
                out += [(item[0], raw, one, one_at) for raw, one, one_kind, one_at in rec
                        if one_kind is not DeadLetter]
            elif kind is not DeadLetter:
                out.append((item[0], item[1], rec, at))
            continue
        if kind is DeadLetter:
            own.dead.append(rec)
            out.append(rec)
            continue
        if kind is Expanded:  # an operator's batch of alarms (VES eventList)
            for raw, one, one_kind, one_at in rec:
                if one_kind is DeadLetter:
                    own.dead.append(one)
                    out.append(one)
                    continue
                accepted[one_kind] = accepted.get(one_kind, 0) + 1
                if one_at is not None and (latest is None or one_at > latest):
                    latest = one_at
                out.append((item[0], raw, one, one_at))
            continue
        if kind is Complaint:
            own.complaints.append(rec)
        accepted[kind] = accepted.get(kind, 0) + 1
        if at is not None and (latest is None or at > latest):
            latest = at
        out.append((item[0], item[1], rec, at))
    own.latest = latest
    _count_decoded(own)
    if shard is not None and not out and items and all(
            type(item) is Decoded and item.idle for item in items):
        return [(shard_key(shard), (shard, None))]  # idle: the sequencer tells the frontier
    if not out:
        return []
    if shard is None:
        return [(CLOCK_KEY, out)]
    return [(shard_key(shard), (shard, out))]


def shard_key(shard: int) -> str:
    """The sequencer key of an input shard (:mod:`forewarn.dataflows.shards`)."""
    return f"{CLOCK_KEY}-{shard}"


def _count_decoded(batch: Decoded) -> None:
    """Count a tally of decoded inputs: a source's, or :func:`_decode_batch`'s own."""
    for d in batch.dead:
        _count_dead(d)
    for rec in batch.complaints:
        metrics.OBSERVER.complaint(rec.subscriber_id, rec.category, rec.event_time)
    for kind, n in batch.accepted.items():
        _ACCEPTED[kind.kind].inc(n)
    if batch.latest is not None:
        metrics.INGEST.note(batch.latest)


_ACCEPTED = {kind: metrics.EVENTS.labels(source=topic, outcome="accepted")
             for kind, topic in metrics.TOPIC_FOR_TYPE.items()}
_SEQ_BATCH = metrics.STEP_BATCH.labels(step="sequence")


def _count_dead(d: DeadLetter) -> DeadLetter:
    """A record that failed decoding (its input was not counted as accepted)."""
    topic = _topic_of(d)
    metrics.DEAD_LETTERS.labels(source=topic, reason=d.code).inc()
    metrics.EVENTS.labels(source=topic, outcome="dead_letter").inc()
    return d


def _count_refused(d: DeadLetter) -> DeadLetter:
    """A decoded record the sequencer refused (already counted as an accepted input)."""
    metrics.DEAD_LETTERS.labels(source=_topic_of(d), reason=d.code).inc()
    return d


def _topic_of(d: DeadLetter) -> str:
    return d.source if d.source in metrics.TOPIC_FOR_TYPE.values() else "unknown"


def _count_out(item: Any) -> Any:
    if isinstance(item, Action):
        metrics.OBSERVER.action(item)
        _observe_latency("action", item.event_time)
    elif isinstance(item, Suppressed):
        metrics.OBSERVER.suppressed(item)
    elif isinstance(item, Incident):
        metrics.OBSERVER.incident(item)
        _observe_latency("incident", item.event_time)
    return item


_LATENCY = {k: metrics.PROCESSING_LATENCY.labels(output=k) for k in ("action", "incident")}


def _observe_latency(output: str, event_time: float) -> None:
    """Wall time since the input that made this output due was decoded."""
    waited = metrics.INGEST.due_since(event_time)
    if waited is not None:
        _LATENCY[output].observe(waited)


def _encode_dead(d: DeadLetter) -> tuple[str, bytes]:
    """``(source, line)``; a Kafka input's dead letter also names its topic/partition/offset."""
    origin = getattr(d.source, "origin", None)  # forewarn.codec.Origin
    if origin is None:
        return str(d.source), encode(d)
    return str(d.source), orjson.dumps({**dead_letter_dict(d), **origin()})


# ---- the flow ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where the three outputs go; each sink takes ``(key, encoded line)``.

    Keys: ``subscriber_id`` for actions, ``incident_id`` for incidents, the source
    (topic or file name) for dead letters; file sinks ignore them.
    """

    actions: Sink
    incidents: Sink
    dead_letters: Sink
    suppressed: Sink | None = None  # optional: ("suppressed", Suppressed) for backtests
    # what care knows at each complaint (``care.context``), keyed by subscriber_id
    care_context: Sink | None = None
    # each subscriber's current impact when it changes (``care.status``, compacted)
    care_status: Sink | None = None


def build_flow(source: Source, outputs: Outputs, cfg: FlowConfig,
               flow_id: str = "forewarn", workers: int = 1) -> Dataflow:
    """The dataflow. ``workers``: how many workers will run it (all processes'); with
    more than one, the sequencer ships what is bound for another worker's sites and
    care shards as one item per worker and batch (:meth:`SequenceLogic._ship`). Any
    count gives the same outputs; the right one saves exchange work."""
    flow = Dataflow(flow_id)
    metrics.declare_rulebook(cfg.book)
    metrics.RECOVERY_ENABLED.set(1 if cfg.durable else 0)
    metrics.RUN_START.set(time.time())
    with _SHARDS_LOCK:
        _SHARDS_HERE.clear()  # (a run's own shards)
    raw = op.input("input", flow, source)
    decoded = op.flat_map_batch(  # one ("clock", batch) each
        "decode", raw, lambda items: _decode_input(items, cfg.rulebook().adapters, cfg.shards))
    routed = op.stateful_batch("sequence", decoded, lambda r: SequenceLogic(cfg, r, workers))

    def unbundle(stage: str):
        return lambda kv: kv[1][1] if kv[1][0] == stage else ()

    # for sites and care: the sequencer's lists, and those it shipped to another worker
    to_keys = routed if workers <= 1 else op.merge(
        "unshipped", routed, op.stateful_flat_map(
            "unship", op.flat_map("to_ship", routed, unbundle("ship")), _unship))

    progress = op.flat_map("to_frontier", routed, unbundle("frontier"))
    frontier = op.map("unkey_frontier", op.stateful_batch(
        "frontier", progress, lambda r: FrontierLogic(cfg, r)), lambda kv: kv[1])
    site_frontier = op.flat_map("frontier_to_site", frontier,
                                lambda x: [(s, (s, f)) for s, f in x[1]] if x[0] == "site" else ())
    to_site = op.merge("site_in", op.flat_map("to_site", to_keys, unbundle("site")),
                       site_frontier)
    site_out = op.stateful_batch("site", to_site, lambda r: SiteLogic(cfg, r))
    site_out = op.map("unkey_site", site_out, lambda kv: kv[1])
    site_split = op.branch("site_split", site_out, lambda r: r[0] == "care")
    # every incident record, and the verdicts about incidents of a known region, to the
    # region's key; regional events grouped there, verdicts tagged with theirs, in
    # event-time order up to the frontier (forewarn.dataflows.region)
    region_in = op.merge(
        "region_in", op.map("key_region", site_split.falses,
                            lambda r: (region_key(r[1].region), r[1]) if r[0] == "incident"
                            else (region_key(r[1][0]), r[1][1])),
        op.flat_map("frontier_to_region", frontier,
                    lambda x: x[1] if x[0] == "region" else ()))
    region_out = op.branch("region_split", op.map("unkey_region", op.stateful_batch(
        "region", region_in, lambda r: RegionLogic(cfg, r)), lambda kv: kv[1]),
        lambda x: type(x) is list)
    incidents = op.map("incident", region_out.falses, _count_out)

    care_from_seq = op.flat_map("to_care", to_keys, unbundle("care"))
    care_key = cfg.care_key
    verdicts = op.merge(
        "verdicts", op.map("verdict", site_split.trues,
                           lambda r: (care_key(r[1].subscriber_id), [r[1]])),
        op.flat_map("region_to_care", region_out.trues, lambda v: _to_care(v, care_key)))
    care_frontier = op.flat_map("frontier_to_care", frontier,
                                lambda x: x[1] if x[0] == "care" else ())
    care_keyed = op.merge("care_in", care_from_seq, verdicts, care_frontier)
    if cfg.durable:  # held by the gates to the frontier, then on to the buckets
        care_keyed = op.map("unkey_gate", op.stateful_batch(
            "gate", care_keyed, lambda r: CareGateLogic(cfg, r)), lambda kv: kv[1])
    status = outputs.care_status is not None
    # (a CareKeyLogic is a StatefulBatchLogic by registration, which mypy does not see)
    builder = cast(Callable[[bytes | None], StatefulBatchLogic], CareKeys(cfg, status))
    care_out = op.stateful_batch("care", care_keyed, builder)
    # a care context or status goes straight out, not to dispatch
    care_split = op.branch("care_split", op.map("unkey_care", care_out, lambda kv: kv[1]),
                           lambda x: type(x) is not CareContext and type(x) is not CareStatus)
    for name, kind, sink in (("care_context", CareContext, outputs.care_context),
                             ("care_status", CareStatus, outputs.care_status)):
        if sink is not None:
            op.output(f"{name}_out", op.filter_map(
                f"encode_{name}", care_split.falses, _encoder_of(kind)), sink)
    to_dispatch = op.key_on("key_dispatch", op.merge(
        "dispatch_in", care_split.trues,
        op.filter_map("frontier_to_dispatch", frontier,
                      lambda x: x[1] if x[0] == "dispatch" else None)),
        lambda _: DISPATCH_KEY)
    care_out = op.stateful_batch("dispatch", to_dispatch, lambda r: DispatchLogic(cfg, r))
    care_out = op.map("count_care", care_out, lambda kv: _count_out(kv[1]))
    actions = op.filter("actions", care_out, lambda x: isinstance(x, Action))
    if outputs.suppressed is not None:
        op.output("suppressed_out", op.filter_map(
            "suppressed", care_out,
            lambda x: ("suppressed", x) if isinstance(x, Suppressed) else None),
            outputs.suppressed)

    dead = op.flat_map("seq_dead", routed, unbundle("dead"))

    def out(step: str, stream, sink: Sink, enc) -> None:
        op.output(step, op.map(f"encode_{step}", stream, enc), sink)

    encode_action = tmf681.encode if cfg.action_format == "tmf681" else encode
    out("actions_out", actions, outputs.actions,
        lambda a: (a.subscriber_id, encode_action(a)))
    out("incidents_out", incidents, outputs.incidents, lambda i: (i.incident_id, encode(i)))
    out("dead_letters_out", dead, outputs.dead_letters, _encode_dead)
    return flow
