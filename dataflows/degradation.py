"""Silent failure detection per cell: sleeping cells and slow degradations, without alarms.

Pure logic, no Bytewax. One :class:`CellHealth` per cell (a dozen floats), grouped per
site by :class:`SiteHealth`, which the site stage drives with what it already receives:
KPIs of its cells, subscriber positions (``location`` / call ends) and the alarm-based
down/up state of its cells.

Two detectors, chosen on the simulated data (``python -m bench.models`` measures them):

* **sleeping** — traffic collapses while the OSS says the cell is up.
  - *Traffic silence* (from positions): the cell's event rate ``lam`` is an exponentially
    weighted mean of its 5-minute position counts (half-life ~35 min, so the smooth
    hour-of-day swing of the traffic is followed, not flagged). After the last position,
    silence becomes evidence once ``P(no event for g)`` falls below ``e^-silence_k`` (and
    ``g >= min_silence_s``). Counts are modelled as gamma-Poisson with the cell's own
    learnt dispersion (:meth:`CellHealth.silence_rate`): clumped traffic, typical of
    thin night hours, needs a longer silence than steady daytime traffic. Idle phones
    report every 54 min, so a healthy cell's traffic never stops for long; a sleeping
    one's does at once. After the cell was down, its phones' updates are bunched and
    leave a gap as long as the outage every 54 min (:meth:`CellHealth._bunched`): for
    the rest of the night such a gap is no evidence. Each cell also learns what its
    hours look like (mean positions per bin by UTC hour, weekdays and weekends apart,
    ~300 bytes): when the coming hour is usually much quieter than the current rate
    (the evening's decline), the rate it expects is capped (:meth:`CellHealth._expected`).
  - *KPI collapse*: ``active_users`` (or, without it, ``call_attempts``) far below the
    cell's own EW mean, with an RRC success rate below its EW mean by ``rrc_z`` standard
    deviations.
* **degradation** — two one-sided CUSUMs over the 15-minute KPIs:
  - dropped calls: binomial log-likelihood ratio of ``p1`` against the cell's own
    baseline drop rate ``p0`` (EW counts with a 1 % prior worth 400 calls), per period
    ``D ln(p1/p0) + (A-D) ln((1-p1)/(1-p0))``, at most ``drop_llr_cap`` per period
    (drops come in bursts: one cell-edge caller redialling);
  - RRC success: Gaussian CUSUM on the z-score ``(mean - rrc) / sd - k``.
  Either crossing its threshold opens a degradation; baselines are frozen while a CUSUM is
  above zero, so a slow ramp is not learnt as normal. It resolves after ``heal_periods``
  consecutive periods that look healthy on both.

Periods touching an alarmed outage of the cell (plus ``grace_s`` after it), and the
cell's first ``warmup`` KPI periods, are neither learnt nor judged.

The EW statistics are the same update as ``river.stats.EWMean`` / ``EWVar`` (checked in
``tests/test_degradation.py``) kept as plain floats: a cell pickles to ~300 bytes
instead of ~1 KB with four river objects, and copies in microseconds.

>>> h = CellHealth("C1")
>>> h.observe_kpi(Kpi("C1", 0.0, 900.0, 10, 0, 0.99, None, 40))
[]
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from forewarn.dataflows.state import restore_fields
from forewarn.model import Kpi

SLEEPING = "sleeping"
DEGRADATION = "degradation"


@dataclass(frozen=True, slots=True)
class HealthParams:
    """Detector settings (defaults tuned on the simulator, see bench/RESULTS.md)."""

    bin_s: float = 300.0  # traffic counting bin
    rate_alpha: float = 0.1  # EW weight of a new traffic bin (half-life ~6.6 bins)
    warmup_bins: int = 6  # traffic bins before the silence test is armed
    silence_k: float = 16.0  # -ln P(silence) needed
    min_silence_s: float = 900.0
    kpi_alpha: float = 0.08  # EW weight of a new KPI period
    warmup: int = 6  # KPI periods learnt before judging
    grace_s: float = 1800.0  # after an alarmed outage clears: not learnt, not judged
    periodic_update_s: float = 3240.0  # T3412: an idle phone reports at least this often
    sync_margin_s: float = 300.0
    sync_hold_s: float = 8 * 3600.0  # how long restored phones' update phases stay bunched
    profile_alpha: float = 0.05  # EW weight of a bin in its hour-of-week slot (~1.5 days)
    profile_min_bins: int = 12  # bins a slot needs (an hour) before it is trusted
    profile_slack: float = 2.0  # the profile caps the rate only when this much quieter
    collapse_ratio: float = 0.15  # active users / attempts below this share of their mean
    min_users: float = 4.0  # mean active users (or attempts) needed to judge a collapse
    rrc_z: float = 3.0
    prior_drop_rate: float = 0.01
    prior_calls: float = 400.0
    drop_factor: float = 5.0  # p1 = max(drop_factor * p0, min_p1)
    min_p1: float = 0.08  # cell-edge callers alone drift to 2-4 %: aim above them
    drop_h: float = 8.0  # drop CUSUM threshold (nats)
    # One period adds at most this to the drop CUSUM: drops come in bursts (a cell-edge
    # caller who redials and drops again), so only a rise sustained over periods counts.
    drop_llr_cap: float = 2.5
    rrc_k: float = 1.5  # allowance per period, in sd
    rrc_h: float = 10.0  # RRC CUSUM threshold (sd)
    min_rrc_sd: float = 0.004
    learn_below: float = 2.0  # baselines keep learning while both CUSUMs are below this
    heal_periods: int = 3


DEFAULT = HealthParams()


@dataclass(frozen=True, slots=True)
class Verdict:
    """A silent failure opened or resolved on a cell.

    ``start_time`` is the estimated onset (last traffic seen, or the first period of the
    CUSUM run), ``at`` the event time at which the verdict became due (deterministic:
    it never depends on when the detector was called), ``end_time`` set when resolved.
    """

    cell_id: str
    kind: str  # sleeping | degradation
    status: str  # open | resolved
    start_time: float
    at: float
    end_time: float | None
    score: float
    reason: str  # silence | kpi_collapse | drop_rate | rrc | traffic_back | healthy | outage
    evidence: tuple[str, ...] = ()


def _slot(t: float) -> int:
    """Hour-of-week slot of a time: UTC hour, + 24 on Saturdays and Sundays.

    >>> _slot(1795392000.0), _slot(1795392000.0 - 86400 + 3 * 3600)  # Mon 00:00, Sun 03:00
    (0, 27)
    """
    day, hour = divmod(int(t // 3600), 24)
    return hour + (24 if (day + 3) % 7 >= 5 else 0)  # 1970-01-01 was a Thursday


def kpi_ref(cell_id: str, period_start: float) -> str:
    """Evidence reference of a KPI period.

    >>> kpi_ref("CELL0001-1", 1795420800.0)
    'kpi:CELL0001-1@1795420800'
    """
    return f"kpi:{cell_id}@{int(period_start)}"


def _ew(mean: float, var: float, x: float, alpha: float) -> tuple[float, float]:
    """One step of river.stats.EWMean / EWVar (same formulas)."""
    new_mean = alpha * x + (1 - alpha) * mean
    sq = alpha * x * x + (1 - alpha) * (var + mean * mean)
    return new_mean, max(0.0, sq - new_mean * new_mean)


@dataclass(slots=True)
class CellHealth:
    """Everything the detectors keep about one cell (a few floats, pickles small)."""

    cell_id: str
    # traffic
    bin_start: float = -1.0
    bin_count: int = 0
    bins: int = 0
    rate: float = 0.0  # EW mean of positions per bin
    rate_sq: float = 0.0  # EW mean of its square (dispersion of the counts)
    # What each hour looks like on this cell: mean positions per bin by UTC hour, for
    # weekdays (slots 0-23) and weekends (24-47), and how many bins each slot has learnt.
    profile: array | None = None
    profile_bins: array | None = None
    expect: float = 1.0  # the profile's rate for the coming hour / ``rate`` (at most 1)
    lam: float = 0.0  # silence_rate(), kept from the last closed bin (0: not yet known)
    last_seen: float = -1.0
    silence_at: float = math.inf  # when the silence becomes evidence
    # KPIs
    periods: int = 0
    users: float = 0.0
    attempts: float = 0.0
    rrc: float = 0.0
    rrc_var: float = 0.0
    calls: float = 0.0  # EW-discounted counts for the baseline drop rate
    drops: float = 0.0
    s_drop: float = 0.0
    s_rrc: float = 0.0
    run_start: float = -1.0  # first period of the current CUSUM run
    healthy: int = 0
    healthy_since: float = -1.0
    # alarm state
    down: bool = False
    down_at: float = -math.inf
    up_at: float = -math.inf
    # after a down period: silences shorter than ``sync_gap`` are no evidence until
    # ``sync_until`` (see :meth:`arm_silence`)
    sync_gap: float = 0.0
    sync_until: float = -math.inf
    # open verdicts: kind -> (start_time, evidence)
    open: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)  # snapshots from before a field was added load too

    # -- alarms (from the site's outage state) --------------------------------------

    def cell_down(self, at: float) -> list[Verdict]:
        """An alarmed outage took the cell down: silent verdicts give way to it."""
        if not self.down:
            self.down_at = at
        self.down = True
        self.silence_at = math.inf
        return [self._resolve(kind, at, "outage") for kind in list(self.open)]

    def cell_up(self, at: float, p: HealthParams = DEFAULT) -> None:
        """The alarmed outage cleared; learning resumes after the grace period."""
        self.down = False
        self.up_at = at
        self._bunched(at - self.down_at, at, p)
        self.last_seen = -1.0
        self.silence_at = math.inf

    def _bunched(self, down_s: float, up_at: float, p: HealthParams) -> None:
        """The cell is back after ``down_s`` seconds without service.

        Its idle phones' periodic updates (every ``periodic_update_s``) are now bunched:
        those that fell due while it was down all report on its return, the others keep
        their phase, so every period repeats a gap as long as the outage (the whole
        period but for the return's spread, after an outage longer than it). At night
        nothing else (calls, moves) fills that gap: until ``sync_hold_s`` later, a
        silence shorter than it plus ``sync_margin_s`` is no evidence of sleep.
        """
        if down_s <= 0 or down_s == math.inf:
            return
        self.sync_gap = min(down_s, p.periodic_update_s) + p.sync_margin_s
        self.sync_until = up_at + p.sync_hold_s

    def _quiet(self, start: float, p: HealthParams) -> bool:
        """Whether time from ``start`` is spoilt by an alarmed outage (or its aftermath)."""
        return self.down or start < self.up_at + p.grace_s

    # -- traffic ------------------------------------------------------------------------

    def _roll(self, at: float, p: HealthParams) -> None:
        """Close the traffic bins before ``at`` (empty bins count as zeros)."""
        if self.bin_start < 0:
            self.bin_start = at - at % p.bin_s
            return
        n = int((at - self.bin_start) // p.bin_s)
        if n <= 0:
            return
        # Traffic is learnt again as soon as the cell is up (the re-registrations that
        # follow an outage are clumped; the dispersion must know it before verdicts
        # resume after the grace period).
        # (A bin that ends after the return is all after it: nothing is seen while down.)
        x = float(self.bin_count)
        alarmed = self.down or self.bin_start + p.bin_s <= self.up_at
        if not alarmed:
            # The hours are learnt even under a sleeping verdict: a cell nobody uses at
            # night is flagged on its first night and must learn that this is normal.
            self._learn_profile(x, n, p)
        if not (alarmed or SLEEPING in self.open):
            if self.bins == 0:
                self.rate, self.rate_sq = x, x * x
            else:
                self.rate = p.rate_alpha * x + (1 - p.rate_alpha) * self.rate
                self.rate_sq = p.rate_alpha * x * x + (1 - p.rate_alpha) * self.rate_sq
            decay = (1 - p.rate_alpha) ** (n - 1)  # the empty bins since
            self.rate *= decay
            self.rate_sq *= decay
            self.bins += n
        self.bin_start += n * p.bin_s
        self.bin_count = 0
        self.expect = self._expected(self.bin_start, p)
        self.lam = self.silence_rate(p)  # once per bin, not per position

    def _learn_profile(self, x: float, n: int, p: HealthParams) -> None:
        """The bin at ``bin_start`` held ``x`` positions, the ``n - 1`` after it none."""
        if self.profile is None:
            self.profile, self.profile_bins = array("f", bytes(4 * 48)), array("B", bytes(48))
        prof, seen, a = self.profile, self.profile_bins, p.profile_alpha
        assert seen is not None
        t = self.bin_start
        for k in range(min(n, 2 * 288)):  # empty bins beyond two days teach nothing new
            i = _slot(t + k * p.bin_s)
            value = x if k == 0 else 0.0
            prof[i] = value if seen[i] == 0 else a * value + (1 - a) * prof[i]
            if seen[i] < 255:
                seen[i] += 1

    def _expected(self, now: float, p: HealthParams) -> float:
        """How much of ``rate`` the cell's learnt hours say to expect from ``now`` on.

        The EW rate lags behind the evening's decline; the profile of the hour starting
        now and of the next one (the quieter of the two), times ``profile_slack`` (an
        hour differs from the same hour yesterday by that much without anything wrong),
        caps it. 1 while unlearnt.
        """
        if self.profile is None or self.rate <= 0:
            return 1.0
        low = math.inf
        for t in (now, now + 3600.0):
            i = _slot(t)
            if self.profile_bins[i] < p.profile_min_bins:  # type: ignore[index]
                i = (i + 24) % 48  # the other kind of day, same hour
                if self.profile_bins[i] < p.profile_min_bins:  # type: ignore[index]
                    return 1.0
            low = min(low, self.profile[i])
        return min(1.0, p.profile_slack * low / self.rate)

    def observe_traffic(self, at: float, p: HealthParams = DEFAULT) -> list[Verdict]:
        """A subscriber was seen on the cell at ``at`` (a ``location``, or a call's end)."""
        out = self.advance(at, p)
        self._roll(at, p)
        self.bin_count += 1
        self.last_seen = max(self.last_seen, at)
        if SLEEPING in self.open:
            out.append(self._resolve(SLEEPING, at, "traffic_back", p=p))
        self.arm_silence(p)
        return out

    def arm_silence(self, p: HealthParams = DEFAULT) -> None:
        """After an observation: when the silence since ``last_seen`` becomes evidence
        (never while the traffic model is warming up, empty, or the cell is down)."""
        if self.bins >= p.warmup_bins and self.rate > 0 and not self.down:
            least = p.min_silence_s
            if self.last_seen < self.sync_until:
                least = max(least, self.sync_gap)
            lam = self.lam if self.lam > 0 else self.silence_rate(p)
            # (0 when the coming hours are learnt as empty: then silence is no evidence)
            self.silence_at = self.last_seen + max(least, p.silence_k / lam) if lam > 0 \
                else math.inf
        else:
            self.silence_at = math.inf

    def silence_rate(self, p: HealthParams = DEFAULT) -> float:
        """Events per second that make a silence evidence: ``-ln P(no event in g) / g``.

        Positions come in clumps (a train's passengers, phones whose periodic updates
        were synchronised when a restored cell took them back all at once, a quiet
        night of 54-minute updates only), so the bin counts are over-dispersed: with
        index of dispersion ``D = var / mean`` they are modelled as gamma-Poisson
        (negative binomial), for which ``P(0 in a bin) = D ** (-mean / (D - 1))``,
        i.e. the Poisson rate scaled by ``ln D / (D - 1)`` (1 when ``D <= 1``).

        >>> h = CellHealth("C1", rate=6.0, rate_sq=36.0 + 6.0)  # Poisson-like: D = 1
        >>> round(h.silence_rate() * 300, 3)
        6.0
        >>> h = CellHealth("C1", rate=6.0, rate_sq=36.0 + 60.0)  # clumped: D = 10
        >>> round(h.silence_rate() * 300, 3)
        1.535
        """
        mean = self.rate
        d = (self.rate_sq - mean * mean) / mean if mean > 0 else 1.0
        scale = math.log(d) / (d - 1) if d > 1.0 + 1e-9 else 1.0
        return mean * scale * self.expect / p.bin_s

    def advance(self, now: float, p: HealthParams = DEFAULT) -> list[Verdict]:
        """Event time has reached ``now``: open a sleeping verdict if the silence is due."""
        if now < self.silence_at or self.down or SLEEPING in self.open:
            return []
        at, self.silence_at = self.silence_at, math.inf
        if self._quiet(self.last_seen, p):
            return []
        lam = self.silence_rate(p)
        ev = (f"traffic:{self.cell_id}@{int(self.last_seen)}-{int(at)}",)
        return self._open(SLEEPING, self.last_seen, at, lam * (at - self.last_seen),
                          "silence", ev)

    # -- KPIs ---------------------------------------------------------------------------

    def observe_kpi(self, kpi: Kpi, p: HealthParams = DEFAULT) -> list[Verdict]:
        """One KPI period of the cell; verdicts when a failure opens or resolves.

        Call :meth:`advance` with the period's end first (as :class:`SiteHealth` does) so
        that a silence that fell due earlier is reported first.
        """
        start, end = kpi.period_start, kpi.period_start + kpi.period_s
        verdict: list[Verdict] = []
        if self._quiet(start, p):
            return verdict
        # No more drops than attempts (a binomial count): more would make the baseline
        # drop rate exceed 1 and its logarithms fail.
        attempts, drops = kpi.call_attempts, min(kpi.dropped_calls, kpi.call_attempts)
        users = kpi.active_users
        rrc = kpi.rrc_success_rate
        ref = kpi_ref(self.cell_id, start)
        if self.periods < p.warmup:
            self._learn(attempts, drops, users, rrc, p)
            return verdict
        sd = max(p.min_rrc_sd, math.sqrt(self.rrc_var))
        z = (self.rrc - rrc) / sd if rrc is not None else 0.0
        # sleeping: the cell's traffic collapsed
        if users is not None and self.users >= p.min_users:
            collapsed = users <= p.collapse_ratio * self.users
        else:
            collapsed = (self.attempts >= p.min_users
                         and attempts <= p.collapse_ratio * self.attempts)
        collapsed = collapsed and self.last_seen < start  # no traffic seen in the period
        if collapsed and (rrc is None or z >= p.rrc_z):
            if SLEEPING not in self.open:
                onset = max(self.last_seen, start - kpi.period_s)
                return self._open(SLEEPING, onset, end, z, "kpi_collapse", (ref,))
            return verdict
        if SLEEPING in self.open:
            if not collapsed and start >= self.open[SLEEPING][0]:
                return [self._resolve(SLEEPING, start, "traffic_back", at=end, p=p)]
            return verdict
        # degradation: CUSUMs on drop rate and RRC success
        p0 = (self.drops + p.prior_drop_rate * p.prior_calls) / (self.calls + p.prior_calls)
        p1 = min(0.5, max(p.drop_factor * p0, p.min_p1))
        llr = drops * math.log(p1 / p0) + (attempts - drops) * math.log((1 - p1) / (1 - p0))
        llr = min(llr, p.drop_llr_cap)
        was_zero = self.s_drop == 0 and self.s_rrc == 0
        self.s_drop = max(0.0, self.s_drop + llr)
        self.s_rrc = max(0.0, self.s_rrc + z - p.rrc_k) if rrc is not None else self.s_rrc
        if was_zero and (self.s_drop > 0 or self.s_rrc > 0):
            self.run_start = start
        if self.s_drop == 0 and self.s_rrc == 0:
            self.run_start = -1.0
        if DEGRADATION in self.open:
            if llr <= 0 and z < p.rrc_z / 2:
                self.healthy += 1
                if self.healthy == 1:
                    self.healthy_since = start
                if self.healthy >= p.heal_periods:
                    self.s_drop = self.s_rrc = 0.0
                    return [self._resolve(DEGRADATION, self.healthy_since, "healthy", at=end)]
            else:
                self.healthy = 0
                st, ev = self.open[DEGRADATION]
                self.open[DEGRADATION] = (st, (ev + (ref,))[-6:])
            return verdict
        if self.s_drop >= p.drop_h or self.s_rrc >= p.rrc_h:
            reason = "drop_rate" if self.s_drop >= p.drop_h else "rrc"
            score = self.s_drop / p.drop_h + self.s_rrc / p.rrc_h
            run = self.run_start if self.run_start >= 0 else start
            return self._open(DEGRADATION, run, end, round(score, 3), reason, (ref,))
        if self.s_drop < p.learn_below and self.s_rrc < p.learn_below:
            self._learn(attempts, drops, users, rrc, p)
        return verdict

    def _learn(self, attempts: int, drops: int, users: int | None, rrc: float | None,
               p: HealthParams) -> None:
        a = p.kpi_alpha if self.periods >= p.warmup else 1.0 / (self.periods + 1)
        self.attempts += a * (attempts - self.attempts)
        if users is not None:
            self.users += a * (users - self.users)
        if rrc is not None:
            if self.periods == 0:
                self.rrc, self.rrc_var = rrc, 0.0
            else:
                self.rrc, self.rrc_var = _ew(self.rrc, self.rrc_var, rrc, a)
        decay = 1 - p.kpi_alpha / 4
        self.calls = self.calls * decay + attempts
        self.drops = self.drops * decay + drops
        self.periods += 1

    # -- verdicts -----------------------------------------------------------------------

    def _open(self, kind: str, start: float, at: float, score: float, reason: str,
              evidence: tuple[str, ...]) -> list[Verdict]:
        """Open a verdict; a sleeping cell supersedes a degradation opened on its way down."""
        out = []
        if kind == SLEEPING:
            if DEGRADATION in self.open:
                out.append(self._resolve(DEGRADATION, at, "superseded"))
            self.s_drop = self.s_rrc = 0.0
            self.run_start = -1.0
        self.open[kind] = (start, evidence)
        self.healthy = 0
        out.append(Verdict(self.cell_id, kind, "open", start, at, None, round(score, 3), reason,
                           evidence))
        return out

    def _resolve(self, kind: str, end: float, reason: str, at: float | None = None,
                 p: HealthParams = DEFAULT) -> Verdict:
        start, evidence = self.open.pop(kind)
        self.healthy = 0
        if kind == SLEEPING and reason == "traffic_back":  # waking up: like an outage's end
            self.up_at = max(self.up_at, end)
            self._bunched(end - start, end, p)
        return Verdict(self.cell_id, kind, "resolved", start, end if at is None else at, end,
                       0.0, reason, evidence)


_NONE: list[Verdict] = []  # "no verdicts" on the short paths (callers never append to it)


@dataclass(slots=True)
class SiteHealth:
    """The silent-failure detectors of one site's cells (state of the site stage)."""

    cells: dict[str, CellHealth] = field(default_factory=dict)
    # No cell's silence falls due before this (a lower bound: only an observation
    # brings a cell's ``silence_at`` forward, and :meth:`position` lowers it then).
    due_at: float = -math.inf

    def _cell(self, cell_id: str) -> CellHealth:
        health = self.cells.get(cell_id)
        if health is None:
            health = self.cells[cell_id] = CellHealth(cell_id)
        return health

    def kpi(self, kpi: Kpi, p: HealthParams = DEFAULT) -> list[Verdict]:
        """A KPI of one of the site's cells."""
        verdicts = self.advance(kpi.period_start + kpi.period_s, p)
        return verdicts + self._cell(kpi.cell_id).observe_kpi(kpi, p)

    def position(self, cell_id: str, at: float, p: HealthParams = DEFAULT) -> list[Verdict]:
        """A subscriber seen on ``cell_id`` at ``at`` (location or call end)."""
        health = self.cells.get(cell_id)
        if health is None:
            health = self._cell(cell_id)
        elif at < self.due_at and at < health.bin_start + p.bin_s and health.bin_start >= 0.0 \
                and not health.open:
            # Most positions: nothing due, no traffic bin to close, no verdict open.
            # CellHealth.observe_traffic's effect, without its general path.
            health.bin_count += 1
            if at > health.last_seen:
                health.last_seen = at
            health.arm_silence(p)
            if health.silence_at < self.due_at:
                self.due_at = health.silence_at
            return _NONE
        out = self.advance(at, p) if at >= self.due_at else _NONE
        verdicts = health.observe_traffic(at, p)
        if health.silence_at < self.due_at:
            self.due_at = health.silence_at
        return out + verdicts if verdicts else out

    def cell_down(self, cell_id: str, at: float) -> list[Verdict]:
        """An alarmed outage (or maintenance) took the cell down."""
        return self._cell(cell_id).cell_down(at)

    def cell_up(self, cell_id: str, at: float, p: HealthParams = DEFAULT) -> None:
        """The cell's alarmed outage cleared."""
        self._cell(cell_id).cell_up(at, p)

    def advance(self, now: float, p: HealthParams = DEFAULT) -> list[Verdict]:
        """Event time reached ``now``: silence verdicts that fell due, in time order."""
        if now < self.due_at:
            return []
        due = [health for health in self.cells.values() if health.silence_at <= now]
        if not due:
            self.due_at = self.next_deadline()
            return []
        out: list[Verdict] = []
        for health in due:
            out += health.advance(now, p)
        out.sort(key=lambda v: (v.at, v.cell_id))
        self.due_at = self.next_deadline()
        return out

    def next_deadline(self) -> float:
        """The earliest time a silence verdict could fall due (``inf`` if none)."""
        return min((h.silence_at for h in self.cells.values()), default=math.inf)
