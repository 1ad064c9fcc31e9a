"""Anchor places per subscriber, learnt online: where they spend their nights and their
working hours.

Operators reach a device whose most-used towers are hit, or whose usual places put it
inside an outage area. The flow already sees every position; the time between two of a
subscriber's positions is time spent where the first was heard. :class:`Anchors` credits
that time, per subscriber, to one of two *buckets* of the day (UTC hour, one network,
one clock, like the cells' hour profiles):

* :data:`NIGHT`: 23:00-06:00, every day (home);
* :data:`WORK`: 10:00-16:00, Monday to Friday (work, or home for who stays there).

Bounded state: per subscriber and bucket, 52 bits in a 64-bit word of the sequencer's
rows (:mod:`forewarn.dataflows.heard`: 16 bytes a subscriber), packing an *anchor* and a
*challenger* site (16-bit site numbers) with their minutes (10 bits each). A
site that is neither takes minutes from the challenger (a Misra-Gries counter: the
challenger is replaced once outweighed), never from the anchor; a challenger with more
minutes than the anchor becomes it. When a score would pass :data:`CAP_MIN`, both are
halved: old time decays, so a move of house is followed after about :data:`CAP_MIN`
minutes of observed time at the new place (two to three nights).

Credited time: the gap between two positions, at most :data:`MAX_GAP_S` (a longer
silence is a phone off or out of coverage: nobody knows where), all of it when both are
on the same site, half of it when the second is elsewhere (the move happened somewhere
in between). It goes to the bucket of the credited span's middle.

>>> a = Anchors()
>>> night = 1795478400.0  # 2026-11-24 00:00 UTC, a Tuesday
>>> for i in range(5):  # heard every 50 min on S1 at night
...     a.learn_one("U1", "S1", night + i * 3000, night + (i + 1) * 3000)
>>> a.anchor("U1", NIGHT), a.anchor("U1", WORK)
('S1', None)
>>> a.expected("U1", night + 3600.0)  # (at 01:00: at night, S1)
'S1'
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from forewarn.dataflows.heard import Heard
from forewarn.dataflows.state import restore_fields

NIGHT, WORK = 0, 1
BUCKETS = (NIGHT, WORK)
BUCKET_NAMES = ("night", "work")
#: A longer gap between two positions credits nobody: the phone was off, or out of
#: coverage (an idle phone reports every 54 min, 3GPP T3412).
MAX_GAP_S = 3600.0
#: Minutes at which a bucket's scores are halved (10 bits): the learning's memory.
CAP_MIN = 1023
#: An anchor counts once this many minutes in its bucket were credited to it (most of
#: one bucket's span: one long visit elsewhere on the first day must not be taken for
#: it), and at least twice its challenger's.
MIN_ANCHOR_MIN = 240
#: Sites numbered past this (16 bits) are not learnt (counted in ``Anchors.unplaced``).
MAX_SITES = 0xFFFF

_SITE_BITS, _SCORE_BITS = 16, 10
_SITE_MASK, _SCORE_MASK = (1 << _SITE_BITS) - 1, (1 << _SCORE_BITS) - 1
_BUCKET_BITS = 2 * (_SITE_BITS + _SCORE_BITS)  # anchor, its score, challenger, its score
_BUCKET_MASK = (1 << _BUCKET_BITS) - 1
_EPOCH_MONDAY = 4 * 86400  # 1970-01-05, a Monday


def _bucket(at: float, night: tuple[int, int], work: tuple[int, int]) -> int | None:
    """:data:`NIGHT` from ``night[0]`` to ``night[1]`` o'clock (UTC), :data:`WORK` from
    ``work[0]`` to ``work[1]`` on weekdays, else ``None``."""
    t = int(at)
    hour = t // 3600 % 24
    if hour >= night[0] or hour < night[1]:
        return NIGHT
    if work[0] <= hour < work[1] and (t - _EPOCH_MONDAY) // 86400 % 7 < 5:
        return WORK
    return None


def bucket_of(at: float) -> int | None:
    """The bucket of an event time (UTC): :data:`NIGHT`, :data:`WORK` or ``None``.

    >>> bucket_of(1795478400.0), bucket_of(1795514400.0), bucket_of(1795503600.0)
    (0, 1, None)
    >>> bucket_of(1795860000.0) is None  # Saturday 10:00: no working hours
    True
    """
    return _bucket(at, (23, 6), (10, 16))


def expected_bucket(at: float) -> int | None:
    """Whose anchor says where someone is at ``at``: the night's (home) from 18:00 to
    08:00, the working hours' from 09:00 to 17:00 on weekdays; wider than the buckets
    learnt, which leave out the hours people travel.

    >>> expected_bucket(1795456800.0), expected_bucket(1795510800.0)  # 18:00, 09:00 Tue
    (0, 1)
    """
    return _bucket(at, (18, 8), (9, 17))


def _unpack(state: int) -> tuple[int, int, int, int]:
    """``(anchor, its minutes, challenger, its minutes)`` of one bucket's bits."""
    return (state & _SITE_MASK, (state >> _SITE_BITS) & _SCORE_MASK,
            (state >> (_SITE_BITS + _SCORE_BITS)) & _SITE_MASK,
            state >> (2 * _SITE_BITS + _SCORE_BITS))


def _sure(a_min: int, o_min: int) -> bool:
    """Enough minutes for an anchor, and clearly more than its challenger's."""
    return a_min >= MIN_ANCHOR_MIN and a_min >= 2 * o_min


def _pack(anchor: int, a_min: int, other: int, o_min: int) -> int:
    return (anchor | a_min << _SITE_BITS | other << (_SITE_BITS + _SCORE_BITS)
            | o_min << (2 * _SITE_BITS + _SCORE_BITS))


def credit(state: int, site: int, minutes: int) -> int:
    """One bucket's bits after ``minutes`` more on ``site`` (a number, 1 and up).

    >>> s = credit(0, 7, 100)           # the first site becomes the anchor
    >>> _unpack(s)
    (7, 100, 0, 0)
    >>> _unpack(credit(credit(s, 9, 30), 8, 20))  # 9 challenges; 8 wears it down
    (7, 100, 9, 10)
    >>> _unpack(credit(credit(s, 9, 30), 8, 50))  # ... and replaces it
    (7, 100, 8, 20)
    >>> _unpack(credit(s, 9, 150))      # a challenger past the anchor takes its place
    (9, 150, 7, 100)
    >>> _unpack(credit(credit(0, 7, 1000), 7, 100))  # past the cap: halved (decay)
    (7, 550, 0, 0)
    """
    anchor, a_min, other, o_min = _unpack(state)
    if site == anchor or anchor == 0:
        anchor, a_min = site, a_min + minutes
    elif site == other:
        o_min += minutes
    elif o_min >= minutes:
        o_min -= minutes
    else:
        other, o_min = site, minutes - o_min
    if o_min > a_min:
        anchor, a_min, other, o_min = other, o_min, anchor, a_min
    while a_min > CAP_MIN:
        a_min, o_min = a_min >> 1, o_min >> 1
    if o_min == 0:
        other = 0
    return _pack(anchor, a_min, other, o_min)


@dataclass(slots=True)
class Anchors:
    """Learnt anchor sites of every subscriber heard, in the anchor column of a
    :class:`~forewarn.dataflows.heard.Heard` (the sequencer's rows, one per subscriber:
    :func:`credit`'s bits of :data:`NIGHT` at ``2 * row``, :data:`WORK` at ``2 * row +
    1``), with its site numbers (16 bits: sites numbered past :data:`MAX_SITES` are not
    learnt)."""

    heard: Heard = field(default_factory=Heard)
    unplaced: int = 0  # credits lost: a site numbered past MAX_SITES

    def __post_init__(self) -> None:
        self.heard.learning(True)

    def __setstate__(self, state: tuple) -> None:
        saved = state[1] if isinstance(state, tuple) else state
        if "packed" not in saved:
            restore_fields(self, state)
            return
        # Format 1: ``packed[sid]`` (both buckets in one int) and site numbers of its
        # own; the sequencer's upgrade then adds each subscriber's latest site and time.
        self.unplaced = saved.get("unplaced", 0)
        heard = self.heard = Heard(names=list(saved["sites"]), numbers=dict(saved["number"]))
        for sid, bits in saved["packed"].items():
            row = heard.add(sid, 0, 0.0)
            heard.anchor[2 * row:2 * row + 2] = array(  # type: ignore[index]
                "Q", (bits & _BUCKET_MASK, bits >> _BUCKET_BITS))

    def learn_one(self, sid: str, site: str, since: float, at: float,
                  moved: bool = False) -> None:
        """``sid``, heard on ``site`` at ``since``, is heard again at ``at`` (elsewhere if
        ``moved``): credit the time between to ``site`` (:meth:`learn_row`, for a caller
        without rows of its own)."""
        heard = self.heard
        row = heard.index.find(sid)
        if row is None:
            if not _credits(since, at, moved):
                return
            row = heard.add(sid, 0, 0.0)
        self.learn_row(row, heard.number(site), since, at, moved)

    def learn_row(self, row: int, n: int, since: float, at: float, moved: bool = False) -> None:
        """Row ``row``, heard on site number ``n`` at ``since``, is heard again at ``at``
        (elsewhere if ``moved``): credit the time between to ``n``. (Called for every
        position: the bucket and the common case, more time on the anchor, are inlined.)"""
        gap = at - since
        if gap < 60.0:
            return
        if gap > MAX_GAP_S:
            gap = MAX_GAP_S
        if moved:
            gap *= 0.5
        t = int(since + gap * 0.5)
        hour = t // 3600 % 24
        if hour >= 23 or hour < 6:
            i = 2 * row  # NIGHT
        elif 10 <= hour < 16 and (t - _EPOCH_MONDAY) // 86400 % 7 < 5:
            i = 2 * row + 1  # WORK
        else:
            return
        minutes = int(gap // 60)
        if minutes == 0:
            return
        if n > MAX_SITES:
            self.unplaced += 1
            return
        col = self.heard.anchor
        assert col is not None
        mine = col[i]
        if mine & _SITE_MASK == n and ((mine >> _SITE_BITS) & _SCORE_MASK) + minutes <= CAP_MIN:
            col[i] = mine + (minutes << _SITE_BITS)  # more on the anchor
            return
        col[i] = credit(mine, n, minutes)

    def _bits(self, sid: str, bucket: int) -> int:
        row = self.heard.index.find(sid)
        col = self.heard.anchor
        return 0 if row is None or col is None else col[2 * row + bucket]

    def anchor(self, sid: str, bucket: int) -> str | None:
        """``sid``'s anchor site in ``bucket``, once it has :data:`MIN_ANCHOR_MIN` minutes."""
        anchor, a_min, _, o_min = _unpack(self._bits(sid, bucket))
        return self.heard.names[anchor] if anchor and _sure(a_min, o_min) else None

    def expected(self, sid: str, at: float) -> str | None:
        """Where ``sid`` is expected at ``at``: their anchor for it (:func:`expected_bucket`)."""
        bucket = expected_bucket(at)
        return None if bucket is None else self.anchor(sid, bucket)

    def anchored_buckets(self, sid: str, site: str) -> int:
        """The buckets in which ``site`` is ``sid``'s anchor, as bits (``1 << bucket``).

        >>> a = Anchors()
        >>> for h in range(4):  # 00:00-04:00 on S1
        ...     a.learn_one("U1", "S1", 1795478400.0 + h * 3600, 1795478400.0 + (h + 1) * 3600)
        >>> a.anchored_buckets("U1", "S1"), a.anchored_buckets("U1", "S2")
        (1, 0)
        """
        heard = self.heard
        n = heard.numbers.get(site)
        col = heard.anchor
        if n is None or col is None:
            return 0
        row = heard.index.find(sid)  # (once for both buckets: called for everyone around an outage)
        if row is None:
            return 0
        bits = 0
        for bucket in BUCKETS:
            state = col[2 * row + bucket]
            if state & _SITE_MASK != n:  # another anchor, or none (most): nothing to unpack
                continue
            _, a_min, _, o_min = _unpack(state)
            if _sure(a_min, o_min):
                bits |= 1 << bucket
        return bits

    def table(self) -> dict[str, tuple[str | None, str | None]]:
        """Every subscriber with an anchor: ``sid -> (night anchor, work anchor)``."""
        out = {}
        for sid in self.heard.sids:
            found = (self.anchor(sid, NIGHT), self.anchor(sid, WORK))
            if found != (None, None):
                out[sid] = found
        return out


def _credits(since: float, at: float, moved: bool) -> bool:
    """Whether :meth:`Anchors.learn_row` credits anything for this span (a bucket, a
    whole minute): its early returns, for :meth:`Anchors.learn_one`'s new rows."""
    gap = min(at - since, MAX_GAP_S) * (0.5 if moved else 1.0)
    return at - since >= 60.0 and bucket_of(since + gap * 0.5) is not None and gap >= 60.0
