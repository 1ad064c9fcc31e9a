"""What a run leaves besides its outputs comes back from the run; a run that must not
show in /metrics (the demo's warm-up day) is zeroed out of them."""

from __future__ import annotations

from forewarn import metrics
from forewarn.dataflows import flow
from forewarn.dataflows.propensity import PropensityModel
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import run_lines
from forewarn.simulator import ScenarioConfig, simulate


def _events_total() -> float:
    return sum(s.value for m in metrics.EVENTS.collect() for s in m.samples
               if s.name.endswith("_total"))


def test_each_run_returns_its_own_model_and_figures_with_any_worker_count(tmp_path) -> None:
    lines = simulate(ScenarioConfig(seed=5, sites=20, hours=4.0)).lines
    book = load_rulebook()
    one = run_lines(lines, tmp_path / "one", book)
    two = run_lines(lines, tmp_path / "two", book, workers=2, propensity=one.model)
    assert one.model is not None and two.model is not None
    learnt = PropensityModel.from_bytes(one.model).updates
    assert learnt > 0 and one.report["warm_start_examples"] == 0
    assert two.report["warm_start_examples"] == learnt
    assert PropensityModel.from_bytes(two.model).updates > learnt
    nothing = run_lines([], tmp_path / "empty", book)  # no action reached dispatch
    assert nothing.model is None and nothing.report == {}


def test_metrics_reset_zeroes_a_run_and_keeps_the_flows_series_exported(tmp_path) -> None:
    lines = simulate(ScenarioConfig(seed=5, sites=10, hours=3.0)).lines
    book = load_rulebook()
    before = _events_total()  # earlier tests in this process count too
    run_lines(lines, tmp_path / "warm-up", book)
    counted = _events_total() - before
    assert counted >= len(lines) * 0.9
    metrics.reset()
    assert _events_total() == 0
    assert not metrics.OBSERVER.open
    assert metrics.INGEST.due_since(0.0) is None
    assert [s.value for m in metrics.BUILD.collect() for s in m.samples] == [1.0]
    run_lines(lines, tmp_path / "run", book)
    # counted again in full: the children forewarn.dataflows.flow bound at import (its accepted
    # counters) are still the exported ones
    assert sum(c._value.get() for c in flow._ACCEPTED.values()) > 0
    assert _events_total() == counted
