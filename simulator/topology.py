"""Radio network topology: sites (towers) with 3, 6 or 9 cells (sectors).

Sites lie in a UK-sized box, about half clustered around a few towns and the
rest spread out. Ids are ``SITE0001`` and its cells ``CELL0001-1`` ...

>>> from forewarn.simulator.config import ScenarioConfig
>>> topo = build_topology(ScenarioConfig(sites=5))
>>> topo.sites[0].site_id, topo.sites[0].cell_ids[0]
('SITE0001', 'CELL0001-1')
>>> topo.cell_by_id['CELL0001-1'].site_id
'SITE0001'
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from forewarn.simulator.config import ScenarioConfig

REGIONS = ("north", "south", "east", "west", "central")
_CENTRE = (52.8, -1.6)
_LAT_RANGE = (50.6, 55.6)
_LON_RANGE = (-4.6, 1.6)
_TOWNS = 6
_NEIGHBOURS = 12


@dataclass(frozen=True, slots=True)
class Site:
    """A tower and its cells."""

    site_id: str
    lat: float
    lon: float
    region: str
    cell_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CellInfo:
    """One radio cell (sector) of a site."""

    cell_id: str
    site_id: str
    technology: str
    lat: float
    lon: float
    region: str

    def record(self) -> dict:
        """The contract's ``cell`` input record."""
        return {
            "type": "cell",
            "cell_id": self.cell_id,
            "site_id": self.site_id,
            "region": self.region,
            "lat": self.lat,
            "lon": self.lon,
            "technology": self.technology,
        }


@dataclass(slots=True)
class Topology:
    """Sites, cells and each site's nearest other sites (closest first)."""

    sites: list[Site]
    cells: list[CellInfo]
    site_by_id: dict[str, Site]
    cell_by_id: dict[str, CellInfo]
    neighbours: dict[str, tuple[str, ...]]

    def site_of(self, cell_id: str) -> Site:
        """The site a cell belongs to."""
        return self.site_by_id[self.cell_by_id[cell_id].site_id]

    def nearby_cell(self, rng: random.Random, site_id: str, k: int) -> str:
        """A random cell of one of the ``k`` nearest other sites (or of this site)."""
        near = self.neighbours[site_id][:k]
        site = self.site_by_id[rng.choice(near)] if near else self.site_by_id[site_id]
        return rng.choice(site.cell_ids)


def _region(lat: float, lon: float) -> str:
    """Region of a position relative to the country centre."""
    dy = lat - _CENTRE[0]
    dx = (lon - _CENTRE[1]) * 0.6  # degrees of longitude are shorter up here
    if abs(dy) < 0.8 and abs(dx) < 0.8:
        return "central"
    if abs(dy) >= abs(dx):
        return "north" if dy > 0 else "south"
    return "east" if dx > 0 else "west"


def _site_position(rng: random.Random, towns: list[tuple[float, float]]) -> tuple[float, float]:
    """Half the sites cluster around towns, the rest are rural."""
    if rng.random() < 0.55:
        lat0, lon0 = rng.choice(towns)
        lat, lon = rng.gauss(lat0, 0.07), rng.gauss(lon0, 0.11)
    else:
        lat, lon = rng.uniform(*_LAT_RANGE), rng.uniform(*_LON_RANGE)
    lat = min(max(lat, _LAT_RANGE[0]), _LAT_RANGE[1])
    lon = min(max(lon, _LON_RANGE[0]), _LON_RANGE[1])
    return round(lat, 5), round(lon, 5)


def _cell_technologies(rng: random.Random, n_cells: int) -> list[str]:
    """3-sector sites are single-technology; larger ones add NR (or LTE) layers."""
    if n_cells == 3:
        return ["nr" if rng.random() < 0.4 else "lte"] * 3
    lte = 3 if n_cells == 6 else 6
    return ["lte"] * lte + ["nr"] * (n_cells - lte)


def _nearest(sites: list[Site]) -> dict[str, tuple[str, ...]]:
    """For each site, the nearest other sites (total order: distance, then id)."""
    out: dict[str, tuple[str, ...]] = {}
    for a in sites:
        coslat = math.cos(math.radians(a.lat))
        ranked = sorted(
            ((b.lat - a.lat) ** 2 + ((b.lon - a.lon) * coslat) ** 2, b.site_id)
            for b in sites
            if b is not a
        )
        out[a.site_id] = tuple(site_id for _, site_id in ranked[:_NEIGHBOURS])
    return out


def build_topology(cfg: ScenarioConfig) -> Topology:
    """Generate ``cfg.sites`` sites deterministically from ``cfg.seed``."""
    rng = cfg.rng("topology")
    towns = [(rng.uniform(51.0, 55.0), rng.uniform(-3.5, 1.0)) for _ in range(_TOWNS)]
    sites: list[Site] = []
    cells: list[CellInfo] = []
    for n in range(1, cfg.sites + 1):
        site_id = f"SITE{n:04d}"
        lat, lon = _site_position(rng, towns)
        region = _region(lat, lon)
        roll = rng.random()
        n_cells = 3 if roll < 0.80 else 6 if roll < 0.95 else 9
        techs = _cell_technologies(rng, n_cells)
        cell_ids = tuple(f"CELL{n:04d}-{k}" for k in range(1, n_cells + 1))
        sites.append(Site(site_id, lat, lon, region, cell_ids))
        cells.extend(
            CellInfo(cell_id, site_id, tech, lat, lon, region)
            for cell_id, tech in zip(cell_ids, techs, strict=True)
        )
    return Topology(
        sites=sites,
        cells=cells,
        site_by_id={s.site_id: s for s in sites},
        cell_by_id={c.cell_id: c for c in cells},
        neighbours=_nearest(sites),
    )
