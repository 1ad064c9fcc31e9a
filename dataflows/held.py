"""The messages a care shard holds until the event-time frontier passes them.

A care shard takes what it is sent in :func:`~forewarn.dataflows.care.care_order` once
every message before a time has arrived (:class:`~forewarn.dataflows.frontier.Frontier`),
so it holds what comes before that. Most of what it holds, during a BSS load, is profile
upserts (:class:`~forewarn.dataflows.messages.Profiled`): a million of them at once when
a load's event time stands still until the next positions move it. Held as objects, each
is a 64-byte object and a name string of about 64 bytes, allocated among the subscribers'
id strings (the same size class), which stay: freed at the frontier, they leave the id
strings' pools two-thirds empty, memory the process keeps (about 150 bytes a subscriber
of resident memory). So upserts are held as columns (the id reference, the time, the
shared profile shape, the name's bytes in one buffer), built from the message as it
arrives (the message is freed with its batch, its blocks reused by the next batch), and
made a message again when the frontier passes it. Profile deletes (and upserts not
slim, as an older record may hold them) are held in the same rows, whole: a delete and
an upsert of one time and subscriber stay in the order they came. Other messages are
held as they are.

>>> from forewarn.dataflows.messages import Profiled
>>> from forewarn.model import Complaint, Subscriber
>>> shape = Subscriber("", "upsert", 0.0, language="pl")
>>> held = Held()
>>> held.add([Profiled("U1", 60.0, "Zoë", shape), Complaint("K1", "U2", 30.0, "other"),
...           Profiled("U3", 90.0, None, shape)])
>>> len(held), held.least
(3, 30.0)
>>> [(type(m).__name__, m.at) for m in held.take_before(61.0)]
[('Complaint', 30.0), ('Profiled', 60.0)]
>>> held.take_before(61.0), len(held), held.least
([], 1, 90.0)
>>> held.messages() == [Profiled("U3", 90.0, None, shape)]
True
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from math import isfinite
from typing import Any

from forewarn.dataflows.care import care_order
from forewarn.dataflows.messages import Profiled, profiled
from forewarn.dataflows.state import check_kinds
from forewarn.model import Subscriber

INF = float("inf")
_NAMELESS, _NAMED, _WHOLE, _TAKEN = 0, 1, 2, 3  # a row's kind (Held.named)


class Held:
    """Held messages: :meth:`add` a batch's, :meth:`take_before` those before a time
    (in no particular order: the caller sorts them), :meth:`messages` all of them.
    ``least``: the earliest time held (``inf`` when none is), so that a frontier that
    passes nothing costs a comparison, not a walk."""

    __slots__ = ("others", "sids", "at", "shapes", "ends", "names", "named", "taken",
                 "least")

    def __init__(self, msgs: Iterable = ()) -> None:
        self.others: list = []  # held as they came: all but profile upserts
        self.sids: list[str] = []  # upserts, a row each: the id string (the message's)
        self.at = array("d")  # the update's time
        # the shared shape (a reference), or a delete's whole record (kind _WHOLE)
        self.shapes: list[Subscriber | None] = []
        self.ends = array("Q")  # where the row's name ends in ``names``
        self.names = bytearray()  # the names, UTF-8, one after the other
        self.named = bytearray()  # the row's kind: _NAMED, _NAMELESS, _WHOLE or _TAKEN
        self.taken = 0  # rows taken (at the frontier), their place not yet reused
        self.least = INF
        self.add(msgs)

    def __len__(self) -> int:
        return len(self.others) + len(self.sids) - self.taken

    def add(self, msgs: Iterable) -> None:
        least = self.least
        others, sids, at, shapes = self.others, self.sids, self.at, self.shapes
        ends, names, named = self.ends, self.names, self.named
        for m in msgs:
            t = m.at
            if t < least:
                least = t
            kind = type(m)
            if kind is Profiled:
                sids.append(m.subscriber_id)
                at.append(t)
                shapes.append(m.shape)
                name = m.name
                if name is None:
                    named.append(_NAMELESS)
                else:
                    named.append(_NAMED)
                    names += name.encode("utf-8", "surrogatepass")
                ends.append(len(names))
            elif kind is Subscriber:  # (a delete: ranks with the upserts, order kept)
                sids.append(m.subscriber_id)
                at.append(t)
                shapes.append(m)
                named.append(_WHOLE)
                ends.append(len(names))
            else:
                others.append(m)
        self.least = least

    def take_before(self, frontier: float) -> list:
        """The messages held from before ``frontier``, no longer held."""
        if not frontier > self.least:
            return []
        others, rows = self._ready(frontier)
        if rows:
            others += self._messages(rows)
        self._taken(rows)
        return others

    def take_runs_before(self, frontier: float, key_of: Callable[[str], str]
                         ) -> list[tuple[str, list]]:
        """The messages held from before ``frontier``, no longer held, in
        :func:`~forewarn.dataflows.care.care_order`, one list per ``key_of`` their
        subscriber: in a list, the profiles in a row as one :class:`ProfileRun` (made
        messages one at a time as the key takes them), the others as they are.

        A bulk load's profiles all pass one frontier: as messages at once, a million
        objects would be alive while care's keys take them, and those keys' own objects,
        allocated among them, would keep their memory from the process after."""
        if not frontier > self.least:
            return []
        others, rows = self._ready(frontier)
        others.sort(key=care_order)
        at, sids = self.at, self.sids
        rows.sort(key=at.__getitem__)  # (stable: one time's rows in the order they came)
        boxes: dict[str, list] = {}
        runs: dict[str, list[int]] = {}  # key -> the rows of its open run
        i, n = 0, len(rows)
        for m in others:
            t = m.at
            while i < n and at[rows[i]] <= t:  # (a profile ranks first at its time)
                _to_run(rows[i], key_of(sids[rows[i]]), boxes, runs)
                i += 1
            key = key_of(m.subscriber_id)
            runs.pop(key, None)  # (the key's next rows start a run of their own)
            box = boxes.get(key)
            if box is None:
                boxes[key] = [m]
            else:
                box.append(m)
        for r in rows[i:]:
            _to_run(r, key_of(sids[r]), boxes, runs)
        out = [(key, [self._run(item) if type(item) is list else item for item in box])
               for key, box in boxes.items()]
        self._taken(rows)
        return out

    def _run(self, rows: list[int]) -> ProfileRun:
        """Rows (none taken) as a :class:`ProfileRun` of their own columns."""
        sids, at, shapes, ends, names, named = (
            self.sids, self.at, self.shapes, self.ends, self.names, self.named)
        run = ProfileRun()
        run.sids = [sids[r] for r in rows]
        run.at = array("d", [at[r] for r in rows])
        run.shapes = [shapes[r] for r in rows]
        run.named = bytes([named[r] for r in rows])
        buf = bytearray()
        run_ends = array("Q")
        for r in rows:
            if named[r] == _NAMED:
                buf += names[ends[r - 1] if r else 0:ends[r]]
            run_ends.append(len(buf))
        run.names, run.ends = bytes(buf), run_ends
        return run

    def _ready(self, frontier: float) -> tuple[list, list[int]]:
        """The other messages before ``frontier`` (no longer held) and the rows before it
        (not yet taken: :meth:`_taken`)."""
        others = [m for m in self.others if m.at < frontier]
        if others:
            self.others = [m for m in self.others if not m.at < frontier]
        rows = [r for r, t in enumerate(self.at) if t < frontier] \
            if len(self.at) > self.taken else []
        return others, rows

    def _taken(self, rows: list[int]) -> None:
        """``rows`` are taken; the least time held anew."""
        at = self.at
        if rows:
            if len(rows) + self.taken == len(at):
                self._clear()
            else:  # taken: left in place (before no frontier) until most are
                named, shapes = self.named, self.shapes
                for r in rows:
                    at[r] = INF
                    named[r] = _TAKEN
                    shapes[r] = None
                self.taken += len(rows)
                if 2 * self.taken >= len(at):
                    self._compact()
        least = min(m.at for m in self.others) if self.others else INF
        if len(self.at) > self.taken:
            least = min(least, min(self.at))
        self.least = least

    def messages(self) -> list:
        """Everything held, as messages (a snapshot's, the end's)."""
        named = self.named
        return [*self.others,
                *self._messages([r for r in range(len(named)) if named[r] != _TAKEN])]

    def _messages(self, rows: list[int]) -> list:
        """Rows (none taken) as the messages they came as."""
        sids, at, shapes, ends, names, named = (
            self.sids, self.at, self.shapes, self.ends, self.names, self.named)
        out: list = []
        add = out.append
        for r in rows:
            kind, shape = named[r], shapes[r]
            assert shape is not None, "a taken row"  # (the callers pass none)
            if kind == _WHOLE:
                add(shape)
                continue
            name = names[ends[r - 1] if r else 0:ends[r]].decode(
                "utf-8", "surrogatepass") if kind == _NAMED else None
            add(profiled(sids[r], at[r], name, shape))
        return out

    def _clear(self) -> None:
        self.sids, self.at, self.shapes = [], array("d"), []
        self.ends, self.names, self.named = array("Q"), bytearray(), bytearray()
        self.taken = 0

    def columns(self) -> dict:
        """What is held as a record's fields (:func:`~forewarn.dataflows.records.freeze_gate`):
        the other messages as messages, the rows as their columns, the live containers
        (taken rows too: kind taken, time ``inf``, no shape). Pickled at once, a snapshot
        costs the columns' bytes, not a message object per row nor a copy."""
        return {"others": self.others, "sids": self.sids, "at": self.at,
                "shapes": self.shapes, "ends": self.ends, "names": self.names,
                "named": self.named}

    @classmethod
    def of_columns(cls, data: dict) -> Held:
        """The messages :meth:`columns` gave, held again; ``ValueError`` or ``TypeError``
        (what is wrong) unless the columns are of their kinds and agree: every time
        finite (but a taken row's ``inf``), every profile shape an upsert's shape of
        the right kinds, a whole record that row's own."""
        held = cls()
        others: Any = data.get("others", [])
        sids: Any = data.get("sids", [])
        at: Any = data.get("at", array("d"))
        shapes: Any = data.get("shapes", [])
        ends: Any = data.get("ends", array("Q"))
        names: Any = data.get("names", b"")
        named: Any = data.get("named", b"")
        if type(others) is not list or type(sids) is not list or type(shapes) is not list:
            raise ValueError("its others, ids or shapes are not lists")
        if not (type(at) is array and at.typecode == "d" and type(ends) is array
                and ends.typecode == "Q"):
            raise ValueError("its times or name ends are not arrays of their kinds")
        if type(names) not in (bytes, bytearray) or type(named) not in (bytes, bytearray):
            raise ValueError("its names or kinds are not bytes")
        n = len(sids)
        if not len(at) == len(shapes) == len(ends) == len(named) == n:
            raise ValueError(f"its columns are of different lengths ({n} ids)")
        if not all(isfinite(m.at) for m in others):
            raise ValueError("a message's time is not finite")
        checked: set[int] = set()  # (shapes are shared: each checked once)
        start, taken = 0, 0
        for r in range(n):
            kind, shape, end, t = named[r], shapes[r], ends[r], at[r]
            if not start <= end <= len(names) or (kind not in (_NAMED, _TAKEN) and end != start):
                raise ValueError(f"row {r}'s name is out of its buffer")
            begin, start = start, end
            if kind == _TAKEN:
                if shape is not None or t != INF:
                    raise ValueError(f"row {r} is taken but holds a profile or a time")
                taken += 1
                continue
            if type(sids[r]) is not str or type(shape) is not Subscriber:
                raise ValueError(f"row {r} is not an id and a profile shape")
            if not isfinite(t):
                raise ValueError(f"row {r}'s time is not finite")
            if kind == _WHOLE:
                if shape.subscriber_id != sids[r] or shape.at != t:
                    raise ValueError(f"row {r} is a whole record of another id or time")
            elif kind not in (_NAMELESS, _NAMED):
                raise ValueError(f"row {r} is of no kind ({kind})")
            elif shape.op != "upsert":
                raise ValueError(f"row {r}'s profile shape is not an upsert's")
            elif kind == _NAMED:
                names[begin:end].decode("utf-8", "surrogatepass")  # (raises if not)
            if id(shape) not in checked:
                checked.add(id(shape))
                check_kinds(shape, f"held row {r}'s profile")
        held.others = others
        held.sids, held.at, held.shapes = sids, at, shapes
        held.ends, held.names, held.named = ends, bytearray(names), bytearray(named)
        held.taken = taken
        least = min((m.at for m in others), default=INF)
        held.least = min(least, min(at)) if n else least
        return held

    def _compact(self) -> None:
        """The rows not taken, in their order, in fresh columns (no message made of
        them): the old columns' memory goes back with them."""
        run = self._run([r for r, kind in enumerate(self.named) if kind != _TAKEN])
        self.sids, self.at, self.shapes, self.ends = run.sids, run.at, run.shapes, run.ends
        self.names, self.named = bytearray(run.names), bytearray(run.named)
        self.taken = 0


def _to_run(row: int, key: str, boxes: dict[str, list], runs: dict[str, list[int]]) -> None:
    """``row`` into ``key``'s open run of rows (a new one after a message)."""
    run = runs.get(key)
    if run is None:
        run = runs[key] = []
        box = boxes.get(key)
        if box is None:
            boxes[key] = [run]
        else:
            box.append(run)
    run.append(row)


class ProfileRun:
    """Profiles in a row of a care key's list (:meth:`Held.take_runs_before`), kept as
    columns, made messages one at a time as they are taken: iterate it.

    >>> from forewarn.model import Subscriber
    >>> shape = Subscriber("", "upsert", 0.0, language="pl")
    >>> held = Held([Profiled("U1", 60.0, "Zoë", shape), Subscriber("U1", "delete", 70.0)])
    >>> [(key, [[(type(m).__name__, m.at) for m in run] for run in box])
    ...  for key, box in held.take_runs_before(80.0, lambda sid: "k")]
    [('k', [[('Profiled', 60.0), ('Subscriber', 70.0)]])]
    """

    __slots__ = ("sids", "at", "shapes", "names", "ends", "named")

    sids: list[str]
    at: array
    shapes: list
    names: bytes
    ends: array
    named: bytes

    def __len__(self) -> int:
        return len(self.sids)

    def __iter__(self) -> Iterator[Profiled | Subscriber]:
        sids, at, shapes, ends, names, named = (
            self.sids, self.at, self.shapes, self.ends, self.names, self.named)
        for r in range(len(sids)):
            kind = named[r]
            if kind == _WHOLE:
                yield shapes[r]
                continue
            name = names[ends[r - 1] if r else 0:ends[r]].decode(
                "utf-8", "surrogatepass") if kind == _NAMED else None
            yield profiled(sids[r], at[r], name, shapes[r])


def flatten(items: Iterable) -> Iterator:
    """A care key's list from its gate, its :class:`ProfileRun`\\ s made messages one at a
    time (each message is let go before the next is made)."""
    for item in items:
        if type(item) is ProfileRun:
            yield from item
        else:
            yield item
