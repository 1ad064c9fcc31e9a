"""Propensity AUC floor in the flow, on the simulator (a stated floor)."""

from __future__ import annotations

import orjson
import pytest

from forewarn.dataflows.propensity import PropensityModel
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import run_lines
from forewarn.simulator import ScenarioConfig, simulate

#: Seed 7, 300 sites, 6 h, warm-started by a 150-site day (seed 1007) through the same
#: flow: measured 0.603-0.606 (seeds 8, 9, 11: 0.567, 0.622, 0.605). A model fully
#: trained offline on three other days reaches 0.59-0.62 on these exposures: the rest of
#: the signal is how long each person stays without service, unknown at notice time
#: (0.76 with it). Cold, before the label-settlement fix, the flow measured 0.42-0.45.
FLOW_AUC_FLOOR = 0.55


def test_propensity_auc_above_floor_in_the_flow(tmp_path) -> None:
    book = load_rulebook()
    warm = run_lines(simulate(ScenarioConfig(seed=1007, sites=150, hours=6.0)).lines,
                     tmp_path / "warm", book).model
    assert warm is not None
    report = run_lines(simulate(ScenarioConfig(seed=7, sites=300, hours=6.0)).lines,
                       tmp_path / "run", book, propensity=warm).report
    assert report["warm_start_examples"] > 300 and report["examples"] > 800, report
    assert report["roc_auc"] >= FLOW_AUC_FLOOR, report


def test_a_run_writes_its_model_and_a_later_run_starts_from_it(tmp_path, capsys) -> None:
    """`forewarn run` leaves propensity.model in --out; `--propensity-model` warm-starts
    the next run with it; a file that is not a snapshot is refused, saying which."""
    from forewarn.cli import main

    events = tmp_path / "day.jsonl"
    events.write_bytes(b"\n".join(simulate(ScenarioConfig(seed=5, sites=20, hours=4.0)).lines))
    common = ["run", "--input", str(events), "--metrics-port", "-1", "--log-level", "ERROR"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    model = tmp_path / "one" / "propensity.model"
    learnt = PropensityModel.from_bytes(model.read_bytes()).updates
    assert learnt > 0
    assert main([*common, "--out", str(tmp_path / "two"), "--propensity-model", str(model)]) == 0
    summary = orjson.loads((tmp_path / "two" / "summary.json").read_bytes())
    assert summary["propensity"]["warm_start_examples"] == learnt
    assert PropensityModel.from_bytes(
        (tmp_path / "two" / "propensity.model").read_bytes()).updates > learnt

    bad = tmp_path / "not-a-model"
    bad.write_bytes(b"yesterday")
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--out", str(tmp_path / "three"), "--propensity-model", str(bad)])
    assert exit_.value.code == 2
    assert f"--propensity-model {bad}: not a propensity model snapshot" in capsys.readouterr().err
