"""Every subscriber an input shard has heard: their latest site and time, one row each.

The sequencer reads and writes a subscriber's row on every position (who moved, whom a
site should be told has left, who is around an outage), and learns their anchor places
(:mod:`forewarn.dataflows.anchors`) from the same rows. At a million subscribers per
shard that table is most of the sequencer's state, so it is columns of typed arrays
indexed by a row number, not dicts of Python objects: a subscriber costs one dict slot
and row number, 4 bytes of site number and 8 of time, 8 of id reference and 16 more when
anchors are learnt (two 52-bit buckets), about 100 bytes in all, where three dicts of
strings, floats and ints cost about 180.

Sites are numbered once (``names[n]``, 0: none); :mod:`forewarn.dataflows.anchors`
packs the same numbers.

>>> h = Heard()
>>> h.note("U1", h.number("S1"), 60.0); h.note("U1", h.number("S2"), 90.0)
>>> h.latest("U1"), h.latest("U2")
(('S2', 90.0), None)
>>> h.note("U2", h.number("S1"), 70.0)
>>> sorted(h.items()), len(h)
([('U1', 'S2', 90.0), ('U2', 'S1', 70.0)], 2)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from forewarn.dataflows.state import restore_fields


@dataclass(slots=True)
class Heard:
    """The rows: ``rows[sid]`` indexes ``sids`` (the id), ``site`` (a site number) and
    ``at`` (the time of their latest position); ``anchor[2 * row + bucket]`` holds their
    anchor bits in a bucket of the day, or ``anchor`` is ``None`` when anchors are not
    learnt."""

    rows: dict[str, int] = field(default_factory=dict)
    # row -> the id string ``rows`` holds: positions carry it on, so that the sites keep
    # that one string for each member, not a copy per record (8 bytes a subscriber here
    # against ~60 for a copy there)
    sids: list[str] = field(default_factory=list)
    site: array = field(default_factory=lambda: array("I"))
    at: array = field(default_factory=lambda: array("d"))
    anchor: array | None = field(default_factory=lambda: array("Q"))
    names: list[str] = field(default_factory=lambda: [""])  # site number -> site id
    numbers: dict[str, int] = field(default_factory=dict)  # site id -> its number

    def __setstate__(self, state: tuple) -> None:
        restore_fields(self, state)
        if len(self.sids) != len(self.site):  # a table saved without its id column
            self.sids = [""] * len(self.site)
            for sid, row in self.rows.items():
                self.sids[row] = sid

    def __len__(self) -> int:
        return len(self.rows)

    def number(self, site: str) -> int:
        """``site``'s number (1 and up), given it the first time it is asked for."""
        n = self.numbers.get(site)
        if n is None:
            n = self.numbers[site] = len(self.names)
            self.names.append(site)
        return n

    def add(self, sid: str, n: int, at: float) -> int:
        """A new row: ``sid`` first heard on site number ``n`` at ``at`` (0: no site yet,
        a row for anchors alone or for a profile, whose id string the row keeps)."""
        row = self.rows[sid] = len(self.site)
        self.sids.append(sid)
        self.site.append(n)
        self.at.append(at)
        if self.anchor is not None:
            self.anchor.extend((0, 0))
        return row

    def note(self, sid: str, n: int, at: float) -> None:
        """``sid`` heard on site number ``n`` at ``at`` (their latest position)."""
        row = self.rows.get(sid)
        if row is None:
            self.add(sid, n, at)
        else:
            self.site[row], self.at[row] = n, at

    def latest(self, sid: str) -> tuple[str, float] | None:
        """``(site, time)`` of ``sid``'s latest position, or ``None`` if never heard."""
        row = self.rows.get(sid)
        if row is None or not self.site[row]:
            return None
        return self.names[self.site[row]], self.at[row]

    def items(self) -> Iterator[tuple[str, str, float]]:
        """``(sid, site, time)`` of every row with a site."""
        names, site, at = self.names, self.site, self.at
        for sid, row in self.rows.items():
            if site[row]:
                yield sid, names[site[row]], at[row]

    def learning(self, on: bool) -> None:
        """Keep the anchor column (zeros for the rows it lacked), or drop it."""
        if not on:
            self.anchor = None
        elif self.anchor is None:
            self.anchor = array("Q", bytes(16 * len(self.site)))

    @classmethod
    def of(cls, last_site: dict[str, str], last_at: dict[str, float]) -> Heard:
        """The rows of the two dicts an older sequencer snapshot kept instead
        (``sid -> site``, ``sid -> time``), in their order."""
        heard = cls()
        for sid, site in last_site.items():
            heard.add(sid, heard.number(site), last_at[sid])
        return heard
