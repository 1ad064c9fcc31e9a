"""Subscribers: home/work cells, segment and their BSS profile history.

Each subscriber has a list of profile versions ``(time, record)``: the
initial upsert at the scenario start, later upserts with changed fields and
possibly a delete (record with ``op`` ``delete``). Inbound roamers (about 1 %)
use the network but have no versions at all: the BSS never hears of them.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

from forewarn.simulator.config import ScenarioConfig, fmt_time
from forewarn.simulator.topology import Topology

SEGMENTS = ("consumer", "business", "vip")
_SEGMENT_CUM_WEIGHTS = (0.85, 0.97, 1.0)
LANGUAGES = ("en", "es", "fr", "de", "pl")
_LANGUAGE_WEIGHTS = {
    "north": (0.86, 0.03, 0.02, 0.03, 0.06),
    "south": (0.82, 0.06, 0.06, 0.03, 0.03),
    "east": (0.80, 0.03, 0.03, 0.04, 0.10),
    "west": (0.90, 0.03, 0.03, 0.02, 0.02),
    "central": (0.84, 0.04, 0.03, 0.05, 0.04),
}
_TIMEZONES = {
    "en": (("Europe/London", 0.965), ("America/New_York", 0.02), ("Asia/Kolkata", 0.015)),
    "es": (("Europe/London", 0.6), ("Europe/Madrid", 0.4)),
    "fr": (("Europe/London", 0.85), ("Europe/Madrid", 0.05), ("Europe/Berlin", 0.1)),
    "de": (("Europe/London", 0.6), ("Europe/Berlin", 0.4)),
    "pl": (("Europe/London", 0.8), ("Europe/Berlin", 0.2)),
}
_FIRST_NAMES = {
    "en": ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Noah", "Grace",
           "Arjun", "Priya", "Sophie", "James", "Emily", "Mohammed", "Ruby", "Leo"),
    "es": ("Lucia", "Hugo", "Martina", "Pablo", "Sofia", "Mateo", "Carmen", "Diego"),
    "fr": ("Camille", "Louis", "Chloe", "Gabriel", "Manon", "Jules", "Lea", "Arthur"),
    "de": ("Lena", "Felix", "Hannah", "Lukas", "Mia", "Jonas", "Emma", "Paul"),
    "pl": ("Zofia", "Jakub", "Julia", "Antoni", "Maja", "Szymon", "Lena", "Kacper"),
}
_LAST_NAMES = {
    "en": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
           "Patel", "Khan", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Green"),
    "es": ("Garcia", "Martinez", "Lopez", "Sanchez", "Perez", "Gomez", "Ruiz", "Diaz"),
    "fr": ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"),
    "de": ("Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"),
    "pl": ("Nowak", "Kowalski", "Wisniewski", "Wojcik", "Kowalczyk", "Kaminski", "Lewandowski",
           "Zielinski"),
}
_PLANS = {
    "consumer": ("Basic 5GB", "Essential 20GB", "Unlimited", "Unlimited Max", "Pay As You Go"),
    "business": ("Business Pro", "Business Unlimited", "Business Essentials"),
    "vip": ("Unlimited Max", "Business Pro", "Premier"),
}
_TAGS = ("5g", "family", "student", "esim", "roaming_addon", "senior", "accessibility",
         "churn_risk", "device_financing", "paperless")
_CHANNEL_ORDER = ("sms", "push", "email")


@dataclass(slots=True)
class SubscriberInfo:
    """A subscriber as the simulator knows them (the truth, not what the BSS says)."""

    subscriber_id: str
    index: int
    home_cell: str
    work_cell: str | None
    segment: str
    roamer: bool
    versions: list[tuple[int, dict]] = field(default_factory=list)

    @property
    def deleted_at(self) -> int | None:
        """When the BSS profile was deleted, if it was."""
        for t, record in self.versions:
            if record["op"] == "delete":
                return t
        return None

    @property
    def may_complain(self) -> bool:
        """Roamers (no profile) and leaving (deleted) customers never complain."""
        return not self.roamer and self.deleted_at is None

    def profile_at(self, t: int) -> dict | None:
        """The BSS upsert in force at ``t`` (``None`` if unknown or deleted)."""
        current: dict | None = None
        for vt, record in self.versions:
            if vt > t:
                break
            current = record if record["op"] == "upsert" else None
        return current

    def known_at(self, t: int) -> bool:
        """Has a BSS profile at ``t``."""
        return self.profile_at(t) is not None

    def contactable_at(self, t: int) -> bool:
        """Known at ``t`` with at least one consented channel."""
        profile = self.profile_at(t)
        return profile is not None and any(ch["consent"] for ch in profile["channels"].values())


def _channels(rng: random.Random, index: int, first: str, last: str) -> dict[str, dict]:
    """SMS always, push ~60 %, email ~70 %; ~2 % consent to nothing at all."""
    channels = {"sms": {"address": f"+447700{index:06d}", "consent": rng.random() < 0.95}}
    if rng.random() < 0.6:
        token = f"{rng.getrandbits(64):016x}"
        channels["push"] = {"address": f"push:{token}", "consent": rng.random() < 0.9}
    if rng.random() < 0.7:
        email = f"{first.lower()}.{last.lower()}{index}@example.com"
        channels["email"] = {"address": email, "consent": rng.random() < 0.8}
    if rng.random() < 0.012:
        for channel in channels.values():
            channel["consent"] = False
    return channels


def _profile(rng: random.Random, sub: SubscriberInfo, region: str, t: int) -> dict:
    """The initial BSS upsert of a subscriber."""
    language = rng.choices(LANGUAGES, weights=_LANGUAGE_WEIGHTS[region])[0]
    zones = _TIMEZONES[language]
    timezone = rng.choices([z for z, _ in zones], weights=[w for _, w in zones])[0]
    first = rng.choice(_FIRST_NAMES[language])
    last = rng.choice(_LAST_NAMES[language])
    channels = _channels(rng, sub.index, first, last)
    record = {
        "type": "subscriber",
        "subscriber_id": sub.subscriber_id,
        "op": "upsert",
        "updated_at": fmt_time(t),
        "language": language,
        "timezone": timezone,
        "segment": sub.segment,
        "channels": channels,
        "name": f"{first} {last}",
        "plan": rng.choice(_PLANS[sub.segment]),
        "tenure_months": rng.randint(1, 240 if sub.segment == "vip" else 180),
        "tags": sorted(rng.sample(_TAGS, rng.choice((0, 0, 1, 1, 2)))),
    }
    if rng.random() < 0.3:
        preferred = list(channels)
        rng.shuffle(preferred)
        record["preferred_channels"] = preferred
    return record


def _changed_profile(rng: random.Random, record: dict, t: int) -> dict:
    """A later upsert of the same profile with one or two fields changed."""
    new = copy.deepcopy(record)
    new["updated_at"] = fmt_time(t)
    for change in rng.sample(("consent", "plan", "preferred", "tags", "language"), 2):
        if change == "consent":
            name = rng.choice(sorted(new["channels"]))
            new["channels"][name]["consent"] = not new["channels"][name]["consent"]
        elif change == "plan":
            new["plan"] = rng.choice(_PLANS[new["segment"]])
        elif change == "preferred":
            preferred = list(new["channels"])
            rng.shuffle(preferred)
            new["preferred_channels"] = preferred
        elif change == "tags":
            new["tags"] = sorted(set(new["tags"]) ^ {rng.choice(_TAGS)})
        else:  # language: people rarely change it
            new["language"] = rng.choice(LANGUAGES) if rng.random() < 0.3 else new["language"]
    return new


def _home_weights(rng: random.Random, topo: Topology) -> list[float]:
    """Cells carry unequal numbers of subscribers (log-normal load)."""
    return [rng.lognormvariate(0.0, 0.45) for _ in topo.cells]


def build_population(cfg: ScenarioConfig, topo: Topology) -> list[SubscriberInfo]:
    """About ``subscribers_per_cell x cells`` subscribers with their profile history."""
    rng = cfg.rng("population")
    t0, t1 = cfg.t0, cfg.t1
    cell_ids = [c.cell_id for c in topo.cells]
    homes = rng.choices(cell_ids, weights=_home_weights(rng, topo),
                        k=round(cfg.subscribers_per_cell * len(cell_ids)))
    population: list[SubscriberInfo] = []
    for index, home in enumerate(homes, start=1):
        site = topo.site_of(home)
        work = topo.nearby_cell(rng, site.site_id, 25) if rng.random() < 0.4 else None
        sub = SubscriberInfo(
            subscriber_id=f"SUB{index:06d}",
            index=index,
            home_cell=home,
            work_cell=work if work != home else None,
            segment=rng.choices(SEGMENTS, cum_weights=_SEGMENT_CUM_WEIGHTS)[0],
            roamer=rng.random() < 0.01,
        )
        if not sub.roamer:
            profile = _profile(rng, sub, site.region, t0)
            sub.versions.append((t0, profile))
            _add_history(rng, sub, profile, t0, t1)
        population.append(sub)
    return population


def _add_history(rng: random.Random, sub: SubscriberInfo, profile: dict, t0: int, t1: int) -> None:
    """~2 % get a profile update during the run and ~0.5 % are deleted."""
    margin = min(600, (t1 - t0) // 10)
    if rng.random() < 0.02:
        t = rng.randint(t0 + margin, t1 - margin)
        sub.versions.append((t, _changed_profile(rng, profile, t)))
    if rng.random() < 0.005:
        t = rng.randint(t0 + margin, t1 - margin)
        if t <= sub.versions[-1][0]:
            t = sub.versions[-1][0] + 1
        delete = {"type": "subscriber", "subscriber_id": sub.subscriber_id, "op": "delete",
                  "updated_at": fmt_time(t)}
        sub.versions.append((t, delete))
