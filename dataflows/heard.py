"""Every subscriber an input shard has heard: their latest site and time, one row each.

The sequencer reads and writes a subscriber's row on every position (who moved, whom a
site should be told has left, who is around an outage), and learns their anchor places
(:mod:`forewarn.dataflows.anchors`) from the same rows. At a million subscribers per
shard that table is most of the sequencer's state, so it is columns of typed arrays
indexed by a row number, not dicts of Python objects: a subscriber costs 8 bytes of id
reference, 4 of site number and 8 of time, 16 more when anchors are learnt (two 52-bit
buckets), and 6-12 bytes of index (an open-addressing table of row numbers, by the id's
hash): about 40 bytes in all, where a dict from id to row number costs about 66 (its
slot, and an int object per row), and three dicts of strings, floats and ints about 180.

Sites are numbered once (``names[n]``, 0: none); :mod:`forewarn.dataflows.anchors`
packs the same numbers.

>>> h = Heard()
>>> h.note("U1", h.number("S1"), 60.0); h.note("U1", h.number("S2"), 90.0)
>>> h.latest("U1"), h.latest("U2")
(('S2', 90.0), None)
>>> h.note("U2", h.number("S1"), 70.0)
>>> sorted(h.items()), len(h), h.row("U2"), h.row("U3")
([('U1', 'S2', 90.0), ('U2', 'S1', 70.0)], 2, 1, None)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

from forewarn.dataflows.rowindex import RowIndex
from forewarn.dataflows.state import restore_fields


@dataclass(slots=True)
class Heard:
    """The rows: ``row(sid)`` finds a subscriber's row, which indexes ``sids`` (the id),
    ``site`` (a site number) and ``at`` (the time of their latest position);
    ``anchor[2 * row + bucket]`` holds their anchor bits in a bucket of the day, or
    ``anchor`` is ``None`` when anchors are not learnt. Rows are never removed: row
    order is the order subscribers were first heard in."""

    # row -> the id string: positions carry it on, so that the sites (and care) keep that
    # one string for each subscriber, not a copy per record (~60 bytes a copy)
    sids: list[str] = field(default_factory=list)
    site: array = field(default_factory=lambda: array("I"))
    at: array = field(default_factory=lambda: array("d"))
    anchor: array | None = field(default_factory=lambda: array("Q"))
    names: list[str] = field(default_factory=lambda: [""])  # site number -> site id
    numbers: dict[str, int] = field(default_factory=dict)  # site id -> its number
    # finds a row by its id (not saved: rebuilt from ``sids``, see RowIndex)
    index: RowIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.index = RowIndex(self.sids)

    def __getstate__(self) -> tuple[None, dict]:
        return None, {f.name: getattr(self, f.name) for f in fields(self)
                      if f.name != "index"}

    def __setstate__(self, state: tuple) -> None:
        restore_fields(self, state)
        saved = state[1] if isinstance(state, tuple) else state
        if len(self.sids) != len(self.site):  # older: ``rows`` (sid -> row), no id column
            self.sids = [""] * len(self.site)
            for sid, row in saved.get("rows", {}).items():
                self.sids[row] = sid
        self.index = RowIndex(self.sids)

    def __len__(self) -> int:
        return len(self.sids)

    def row(self, sid: str) -> int | None:
        """``sid``'s row, or ``None`` if never heard."""
        return self.index.find(sid)

    def check_columns(self) -> None:
        """Raise ``ValueError`` unless the columns agree (a table read from a snapshot)."""
        n = len(self.sids)
        if len(self.site) != n or len(self.at) != n or (
                self.anchor is not None and len(self.anchor) != 2 * n):
            raise ValueError(f"the rows' columns differ in length ({n} ids, "
                             f"{len(self.site)} sites, {len(self.at)} times)")
        if any(type(sid) is not str for sid in self.sids):
            raise ValueError("a row's id is not a string")
        if any(not 0 <= s < len(self.names) for s in self.site):
            raise ValueError(f"a site number is not one of the {len(self.names)} sites")

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
        row = len(self.sids)
        self.sids.append(sid)
        self.index.add(sid, row)
        self.site.append(n)
        self.at.append(at)
        if self.anchor is not None:
            self.anchor.extend((0, 0))
        return row

    def note(self, sid: str, n: int, at: float) -> None:
        """``sid`` heard on site number ``n`` at ``at`` (their latest position)."""
        row = self.index.find(sid)
        if row is None:
            self.add(sid, n, at)
        else:
            self.site[row], self.at[row] = n, at

    def latest(self, sid: str) -> tuple[str, float] | None:
        """``(site, time)`` of ``sid``'s latest position, or ``None`` if never heard."""
        row = self.index.find(sid)
        if row is None or not self.site[row]:
            return None
        return self.names[self.site[row]], self.at[row]

    def items(self) -> Iterator[tuple[str, str, float]]:
        """``(sid, site, time)`` of every row with a site."""
        names, site, at = self.names, self.site, self.at
        for row, sid in enumerate(self.sids):
            if site[row]:
                yield sid, names[site[row]], at[row]

    def on_sites(self, sites: set[str]) -> list[tuple[float, str, str]]:
        """``(time, sid, site)`` of every row whose latest site is one of ``sites``, in
        row order: :meth:`items` filtered, without a tuple and a generator step per row
        (a watch's start scans every row: the sites are matched by number).

        >>> h = Heard.of({"U1": "S1", "U2": "S2", "U3": "S1"}, {"U1": 5.0, "U2": 6.0, "U3": 7.0})
        >>> h.on_sites({"S1", "S9"})
        [(5.0, 'U1', 'S1'), (7.0, 'U3', 'S1')]
        """
        numbers = self.numbers
        wanted = {numbers[s] for s in sites if s in numbers}  # (never 0: no site yet)
        if not wanted:
            return []
        names, at, sids = self.names, self.at, self.sids
        return [(at[row], sids[row], names[n]) for row, n in enumerate(self.site)
                if n in wanted]

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
