"""bench.scale_out's launcher: the flow as one and as two single-worker processes over one
input file finishes, splits keyed work over both processes, and gives the same outputs."""

from __future__ import annotations

from pathlib import Path

from bench.scale_out import determinism, effective_partitions, launch, step_summary, write_input
from forewarn.simulator import ScenarioConfig, simulate


def test_two_processes_give_the_outputs_of_one(tmp_path: Path) -> None:
    lines = simulate(ScenarioConfig(seed=7, sites=10, hours=1.0)).lines
    input_path = tmp_path / "input.jsonl"
    write_input(lines, input_path)
    parts = effective_partitions(2)  # the same P for both: outputs are only equal at equal P

    one = launch(input_path, tmp_path / "one", 1, parts, timeout_s=120)
    two = launch(input_path, tmp_path / "two", 2, parts, timeout_s=120)

    assert one["outputs"]["actions.jsonl"]["lines"] > 0  # not two empty runs alike
    assert two["outputs"] == one["outputs"]
    assert determinism({(1, parts): [one], (2, parts): [two]}) == {(1, parts): True,
                                                                   (2, parts): True}
    # both processes ran the flow, and per-site work was split between them
    assert len(two["flow_cpu_s"]) == 2 and min(two["flow_cpu_s"]) > 0
    sites_one, sites_two = step_summary(one)["site"], step_summary(two)["site"]
    assert sites_two["keys"] == sites_one["keys"] == 10
    assert sites_two["on_processes"] == 2
    assert two["flow_wall_s"] <= two["wall_s"]
    # items crossed between the processes, and none with one process
    assert one["exchanged_bytes"] == 0 < two["exchanged_bytes"]


def test_two_processes_give_the_outputs_of_one_on_a_storm(tmp_path: Path) -> None:
    """A storm (9 of the north's 10 sites down within 15 min): its regional event and
    who is told once are decided in event-time order, on whichever process."""
    lines = simulate(ScenarioConfig(seed=13, sites=40, hours=4.0, subscribers_per_cell=12,
                                    storm_region="north")).lines
    input_path = tmp_path / "input.jsonl"
    write_input(lines, input_path)
    parts = effective_partitions(2)
    one = launch(input_path, tmp_path / "one", 1, parts, timeout_s=180)
    two = launch(input_path, tmp_path / "two", 2, parts, timeout_s=180)
    assert two["outputs"] == one["outputs"]
    incidents = (tmp_path / "two" / "incidents.jsonl").read_text(encoding="utf-8")
    assert '"kind":"regional_outage"' in incidents
