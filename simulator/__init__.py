"""Deterministic mobile-network simulator with ground truth, Forewarn's yardstick.

>>> from forewarn.simulator import ScenarioConfig, simulate
>>> sc = simulate(ScenarioConfig(seed=1, sites=3, hours=1.0, subscribers_per_cell=2))
>>> sc.stats["sites"], sc.stats["bad_lines_total"] >= 9
(3, True)
"""

from forewarn.simulator.config import ScenarioConfig
from forewarn.simulator.scenario import Scenario, simulate, write_scenario

__all__ = ["Scenario", "ScenarioConfig", "simulate", "write_scenario"]
