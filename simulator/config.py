"""Scenario configuration, time helpers and seeded random streams.

All simulator times are whole POSIX seconds (``int``, UTC); records carry them
as RFC 3339 strings.

>>> cfg = ScenarioConfig(seed=1, sites=30, hours=3.0)
>>> cfg.t1 - cfg.t0
10800
>>> fmt_time(parse_time("2026-11-23T06:00:00Z"))
'2026-11-23T06:00:00Z'
>>> cfg.scaled(10)  # 10 at 300 sites x 6 h -> 30 sites x 3 h
1
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

#: Reference network size the default outage counts are given for.
REFERENCE_SITES = 300
REFERENCE_HOURS = 6.0


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """Everything a scenario depends on; the same config always yields the same bytes."""

    seed: int = 7
    sites: int = 300
    hours: float = 6.0
    subscribers_per_cell: float = 40.0
    start: str = "2026-11-23T06:00:00Z"
    #: Mean voice calls per consumer per hour at busy hours (business x1.6, vip x2).
    call_rate_per_hour: float = 0.6
    mean_call_s: float = 180.0
    #: Idle-mode periodic location update (T3412-like timer), seconds.
    periodic_update_s: int = 3240
    #: Share of extra defective lines.
    bad_line_rate: float = 0.0005
    # Outage counts at the reference size (300 sites x 6 h); scaled, at least 1 when > 0.
    cell_outages: int = 8
    site_outages: int = 5
    blips: int = 15
    flapping_cells: int = 2
    maintenance_windows: int = 3
    noise_alarms: int = 60
    #: Share of cells degraded (higher drop rate) for some hours.
    degraded_cell_share: float = 0.02
    # Silent failures (no alarm at all) at the reference size; scaled, at least 1 when > 0.
    #: Sleeping cells: look up to the OSS but serve nobody (traffic collapses).
    sleeping_cells: int = 2
    #: Slow degradations: the drop rate climbs over 1-2 h, then stays high until fixed.
    slow_degradations: int = 3
    #: Background complaints (not caused by the network) per subscriber-hour.
    background_complaint_rate: float = 0.0002
    #: A storm (regional power cut): the region it hits (None: no storm), when it begins
    #: (None: 40 % into the scenario) and the share of the region's sites that lose power.
    storm_region: str | None = None
    storm_start: str | None = None
    storm_share: float = 0.7

    def __post_init__(self) -> None:
        if self.sites < 1:
            raise ValueError("sites must be >= 1")
        if not self.hours > 0:
            raise ValueError("hours must be > 0")
        if self.subscribers_per_cell < 0:
            raise ValueError("subscribers_per_cell must be >= 0")
        parse_time(self.start)
        if self.storm_start is not None:
            parse_time(self.storm_start)
        if not 0 < self.storm_share <= 1:
            raise ValueError("storm_share must be in (0, 1]")

    @property
    def t0(self) -> int:
        """Scenario start, POSIX seconds."""
        return parse_time(self.start)

    @property
    def t1(self) -> int:
        """Scenario end (exclusive for events), POSIX seconds."""
        return self.t0 + int(round(self.hours * 3600))

    def scaled(self, base: int | float) -> int:
        """A reference count scaled to this size; at least 1 unless ``base`` is 0."""
        if base <= 0:
            return 0
        factor = (self.sites / REFERENCE_SITES) * (self.hours / REFERENCE_HOURS)
        return max(1, round(base * factor))

    def rng(self, *stream: object) -> random.Random:
        """An independent, reproducible random stream named by ``stream``."""
        return random.Random("/".join([str(self.seed), *map(str, stream)]))


def parse_time(text: str) -> int:
    """Parse an RFC 3339 timestamp with an offset into whole POSIX seconds.

    >>> parse_time("1970-01-01T01:00:00+01:00")
    0
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time without an offset: {text!r}")
    return int(parsed.timestamp())


@lru_cache(maxsize=1 << 16)
def fmt_time(t: int) -> str:
    """Format POSIX seconds as RFC 3339 UTC (``...Z``).

    >>> fmt_time(0)
    '1970-01-01T00:00:00Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
