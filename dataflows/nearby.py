"""Who is around an outage: the watch behind the ``walk_in`` and ``reappeared`` triggers.

The contract's *impacted* are the subscribers whose latest position is on a cell when
it goes down. Two kinds of people it cannot see lose service too:

* **walk-ins**: someone who moves into a dead site's area after the outage began (or
  moved there before it, unobserved) reports nothing: out of coverage, their phone is
  silent. The network itself treats a phone it has not heard from for the periodic
  update timer (3GPP T3412, 54 min by default) plus 4 minutes as detached. A subscriber
  last heard on one of the sites nearest an outage who then stays silent that long
  while it lasts is most likely inside the hole.
* **reappearances**: someone unheard during a short outage who turns up on one of its
  cells within minutes of its restoration was probably in it: phones re-register when
  coverage returns.

Two halves, because the two facts live in different places:

* :class:`NearbyWatch`, in the sequencer (it sees every position): while a site has an
  open outage alarm (and for ``reappear_s`` after the last clears), it forwards to that
  site a :class:`~forewarn.dataflows.messages.Near` for each position heard on one of its
  ``nearby_sites`` nearest sites (one site counts each subscriber: the nearest down
  one), and tells it when they are heard elsewhere. When the watch starts, the
  subscribers last heard on those sites are sent at once, from the sequencer's
  latest-site table. Nothing is forwarded, and each position costs one truthiness
  test, while no site is down.
* :class:`Surroundings`, in the site: the latest ``Near`` of each subscriber, in
  last-heard order, so that the silent ones are at the front.

>>> watch = NearbyWatch()
>>> watch.place("S1", 0.0, 0.0); watch.place("S2", 0.0, 0.01); watch.place("S3", 0.0, 1.0)
>>> sites: dict = {}
>>> watch.start("S1", 65.0, 1, Heard.of({"U1": "S2", "U2": "S3"}, {"U1": 50.0, "U2": 60.0}), sites)
>>> sites["S1"][0], len(sites["S1"])
(Watch(at=65.0, ended=False), 2)
>>> sites["S1"][1]  # last heard at 50, sent when the watch began
Near(subscriber_id='U1', site_id='S2', at=50.0, near=True, anchored=0, sent=65.0)
>>> watch.heard("U1", "S3", 70.0, sites)  # heard farther away: S1 lets them go
>>> sites["S1"][-1], watch.followed
(Near(subscriber_id='U1', site_id='S3', at=70.0, near=False, anchored=0, sent=70.0), {})
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from forewarn.dataflows.anchors import Anchors
from forewarn.dataflows.heard import Heard
from forewarn.dataflows.messages import Near, Watch
from forewarn.dataflows.state import restore_fields

#: A watch ends this long after it began even if its alarm stays open (a stuck alarm
#: must not make a site follow everyone who passes by for weeks; by then the people
#: around a long outage have been found or have gone).
MAX_WATCH_S = 12 * 3600.0
#: At most this many sites watched at once. A watch's start scans the latest site of
#: every subscriber once; a storm of outage alarms (or a hostile feed raising one on
#: every site) must not turn that into minutes of work on the one sequencer. Sites down
#: beyond it get no walk-in notices (counted in ``NearbyWatch.unwatched``).
MAX_WATCHES = 300


@dataclass(slots=True)
class NearbyWatch:
    """The sequencer's side: which sites are down, and whom each one follows.

    A subscriber is counted by one watching site at a time, the *owner* of the site they
    were last heard on: that site itself if it is down (they are its own, impacted or
    not), else the nearest watching site (distance, then id). So someone around two
    outages, or inside one and near another, is one walk-in candidate, not two, and
    which site counts them depends only on the records.
    """

    site_xy: dict[str, tuple[float, float]] = field(default_factory=dict)  # site -> lat, lon
    # watching site -> [its nearest sites, when the watch began, when it ends (None:
    # while an outage alarm is open)]
    watches: dict[str, list] = field(default_factory=dict)
    # site -> the sites watching it, nearest first: [(squared distance, watching site)]
    near_of: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    followed: dict[str, str] = field(default_factory=dict)  # subscriber -> the site counting them
    followers: dict[str, dict[str, None]] = field(default_factory=dict)  # site -> subscribers
    unwatched: int = 0  # outage starts not watched: MAX_WATCHES reached
    # tell a site when its watch begins and ends; with several input shards one of them
    # does (forewarn.dataflows.shards), the others only send their own subscribers' Near
    announce: bool = True
    # the sequencer's learnt anchor places (the same object; None: not learnt): each
    # Near says in which buckets of the day the site counting them is their anchor
    anchors: Anchors | None = None

    def __setstate__(self, state: tuple) -> None:
        restore_fields(self, state)

    def place(self, site: str, lat: float | None, lon: float | None) -> None:
        """Where a site is (its first cell with coordinates)."""
        if lat is not None and lon is not None and site not in self.site_xy:
            self.site_xy[site] = (lat, lon)

    def ranked(self, site: str, k: int) -> list[tuple[float, str]]:
        """The ``k`` sites nearest ``site``: ``(squared distance, site)``, nearest first
        (then by id: the same on every run).

        >>> w = NearbyWatch()
        >>> for s, lon in (("A", 0.0), ("B", 0.2), ("C", 0.1), ("D", 0.1)): w.place(s, 0.0, lon)
        >>> [s for _, s in w.ranked("A", 2)]
        ['C', 'D']
        """
        xy = self.site_xy.get(site)
        if xy is None:
            return []
        lat0, lon0 = xy
        shrink = math.cos(math.radians(lat0))
        return sorted(((lat - lat0) ** 2 + ((lon - lon0) * shrink) ** 2, s)
                      for s, (lat, lon) in self.site_xy.items() if s != site)[:k]

    def nearest(self, site: str, k: int) -> tuple[str, ...]:
        """The ids of :meth:`ranked`."""
        return tuple(s for _, s in self.ranked(site, k))

    def owner(self, site: str) -> str | None:
        """Who counts someone heard on ``site``: the site itself if it is watched (down),
        else the nearest site watching it."""
        if site in self.watches:
            return site
        watching = self.near_of.get(site)
        return watching[0][1] if watching else None

    def start(self, site: str, at: float, k: int, heard: Heard,
              sites: dict[str, list]) -> None:
        """An outage alarm opened on ``site`` at ``at``: follow who is around it (if not
        already)."""
        watch = self.watches.get(site)
        if watch is not None:
            watch[2] = None  # open again: the watch lasts while it is
            return
        if len(self.watches) >= MAX_WATCHES:
            self.unwatched += 1
            return
        ranked = self.ranked(site, k)
        self.watches[site] = [tuple(s for _, s in ranked), at, None]
        for dist, n in ranked:
            watching = self.near_of.setdefault(n, [])
            watching.append((dist, site))
            watching.sort()
        if self.announce:  # an earlier watch's news is stale
            sites.setdefault(site, []).append(Watch(at))
        mine = {n for _, n in ranked if self.owner(n) == site} | {site}
        around = sorted(heard.on_sites(mine))  # (when, sid, site): scans every row
        for when, sid, s in around:  # oldest first: the site keeps them in last-heard order
            self._claim(sid, s, when, site, sites, at)

    def stop(self, site: str, at: float, linger_s: float) -> None:
        """``site``'s last outage alarm cleared at ``at``: watch ``linger_s`` longer."""
        watch = self.watches.get(site)
        if watch is not None:
            watch[2] = at + linger_s

    def heard(self, sid: str, site: str, at: float, sites: dict[str, list]) -> None:
        """A position of ``sid`` on ``site``: tell the site that counts them now, and the
        one that did before if another (it lets them go)."""
        owner = self.owner(site)
        if owner is not None:
            self._claim(sid, site, at, owner, sites, at)
        elif sid in self.followed:  # (most positions during a watch: nobody to tell)
            self._release(sid, site, at, sites, at)

    def _claim(self, sid: str, site: str, at: float, owner: str,
               sites: dict[str, list], now: float) -> None:
        before = self.followed.get(sid)
        if before is not None and before != owner:
            self._release(sid, site, at, sites, now)
        if owner != site:  # a down site hears its own positions directly
            anchors = self.anchors
            anchored = anchors.anchored_buckets(sid, owner) if anchors is not None else 0
            sites.setdefault(owner, []).append(Near(sid, site, at, True, anchored, now))
            self.followed[sid] = owner
            self.followers.setdefault(owner, {})[sid] = None

    def _release(self, sid: str, site: str, at: float, sites: dict[str, list],
                 now: float) -> None:
        before = self.followed.pop(sid, None)
        if before is not None:
            del self.followers[before][sid]
            if before != site:
                sites.setdefault(before, []).append(Near(sid, site, at, False, sent=now))

    def expire(self, now: float, heard: Heard, sites: dict[str, list],
               silence_s: float = float("inf")) -> None:
        """End watches past their end (or :data:`MAX_WATCH_S` old): the site forgets who
        it heard around (a :class:`~forewarn.dataflows.messages.Watch` that ended), and those it
        followed go to the site that counts them now, if another still watches, unless
        their silence is older than ``silence_s`` (the site that had them judged it)."""
        for site, (near, began, until) in list(self.watches.items()):
            if (until is not None and until < now) or now - began > MAX_WATCH_S:
                del self.watches[site]
                for n in near:
                    watching = [w for w in self.near_of[n] if w[1] != site]
                    if watching:
                        self.near_of[n] = watching
                    else:
                        del self.near_of[n]
                if self.announce:
                    sites.setdefault(site, []).append(Watch(now, ended=True))
                for sid in self.followers.pop(site, ()):
                    del self.followed[sid]
                    latest = heard.latest(sid)
                    if latest is None:
                        continue
                    where, when = latest
                    owner = self.owner(where)
                    if owner is not None and when + silence_s > now:
                        self._claim(sid, where, when, owner, sites, now)


@dataclass(slots=True)
class Surroundings:
    """The site's side: the latest of each subscriber heard around it, oldest first.

    ``heard[sid] = (site, at)``; a subscriber heard farther away, or on this site (its
    own positions), is dropped: neither a walk-in nor a reappearance candidate.

    >>> s = Surroundings()
    >>> s.near(Near("U2", "S2", 40.0)); s.near(Near("U1", "S2", 50.0))
    >>> s.silent_since(45.0, 0.0)  # heard at or before 45 and not since
    [('U2', 'S2', 40.0)]
    >>> s.near(Near("U1", "S9", 60.0, near=False)); s.heard
    {}
    """

    heard: dict[str, tuple[str, float]] = field(default_factory=dict)
    ordered: bool = True  # False after an entry older than the newest: sorted when read
    # those of ``heard`` whose anchor place is this site in some bucket: sid -> its bits
    anchored: dict[str, int] = field(default_factory=dict)

    def __setstate__(self, state: tuple) -> None:
        restore_fields(self, state)

    def clear(self) -> None:
        """Forget everyone (a watch began or ended)."""
        self.heard.clear()
        self.anchored.clear()
        self.ordered = True

    def _order(self) -> None:
        """Oldest first again (once for a burst of older entries: a watch handed over)."""
        if not self.ordered:
            self.heard = dict(sorted(self.heard.items(), key=lambda kv: kv[1][1]))
            self.ordered = True

    def near(self, msg: Near) -> None:
        heard = self.heard
        known = heard.get(msg.subscriber_id)
        if known is not None:
            if known[1] > msg.at:
                return  # a late position: their latest stands
            del heard[msg.subscriber_id]  # re-inserted at the end: last-heard order
        if msg.near:
            if self.ordered and heard and next(reversed(heard.values()))[1] > msg.at:
                self.ordered = False  # older than the newest (a watch handed them over)
            heard[msg.subscriber_id] = (msg.site_id, msg.at)
            if msg.anchored:
                self.anchored[msg.subscriber_id] = msg.anchored
                return
        self.anchored.pop(msg.subscriber_id, None)

    def here(self, sid: str, at: float) -> tuple[str, float] | None:
        """``sid`` heard on this site at ``at``: forget them; their latest before, if newer
        knowledge does not replace it (a late position)."""
        known = self.heard.get(sid)
        if known is not None and known[1] <= at:
            del self.heard[sid]
            self.anchored.pop(sid, None)
        return known

    def silent_since(self, upto: float, from_: float) -> list[tuple[str, str, float]]:
        """Take out everyone last heard at or before ``upto``: ``(sid, site, at)``, oldest
        first; those heard before ``from_`` are dropped without being returned."""
        out = []
        self._order()
        heard = self.heard
        while heard:
            sid, (site, at) = next(iter(heard.items()))
            if at > upto:
                break
            del heard[sid]
            self.anchored.pop(sid, None)
            if at >= from_:
                out.append((sid, site, at))
        return out

    def expected(self, now: float, within_s: float, silence_s: float, from_: float,
                 bucket_of: Callable[[float], int | None]) -> list[tuple[str, str, float]]:
        """Take out those anchored here in the bucket of ``now`` or of ``now + within_s``,
        last heard at or before ``now - silence_s`` and at or after ``from_``: ``(sid,
        site, at)`` in id order. Those heard before ``from_`` stay (a walk-in check
        drops them).

        >>> s = Surroundings()
        >>> s.near(Near("U1", "S2", 10.0, anchored=0b01)); s.near(Near("U2", "S2", 12.0))
        >>> s.near(Near("U3", "S2", 50.0, anchored=0b10))
        >>> s.expected(60.0, 0.0, 30.0, 0.0, lambda t: 0)  # U3: too recent; U2: not anchored
        [('U1', 'S2', 10.0)]
        >>> s.expected(90.0, 0.0, 30.0, 0.0, lambda t: 0), s.heard["U3"]  # U3: not at night
        ([], ('S2', 50.0))
        """
        out: list[tuple[str, str, float]] = []
        b_now, b_soon = bucket_of(now), bucket_of(now + within_s)
        bits = (0 if b_now is None else 1 << b_now) | (0 if b_soon is None else 1 << b_soon)
        if not bits:
            return out
        for sid in sorted(self.anchored):
            site, at = self.heard[sid]
            if self.anchored[sid] & bits and from_ <= at <= now - silence_s:
                out.append((sid, site, at))
        for sid, _, _ in out:
            del self.anchored[sid]  # (still in ``heard``: a walk-in check skips the told)
        return out

    def front(self) -> float | None:
        """When the subscriber heard least recently was heard."""
        self._order()
        return next(iter(self.heard.values()))[1] if self.heard else None

    def forget_before(self, at: float) -> None:
        """Drop everyone last heard before ``at`` (too long ago to matter)."""
        self._order()
        heard = self.heard
        while heard:
            sid, (_, when) = next(iter(heard.items()))
            if when >= at:
                break
            del heard[sid]
            self.anchored.pop(sid, None)
