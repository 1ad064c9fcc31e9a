"""A quality floor in CI: a small night-time scenario of the matrix (docs/quality.md),
simulated and run through the flow with its ground truth.

The floors sit below what three seeds measured (21, 22, 23: recall 0.86-0.99, outage
notice precision 0.97-1.0, area notices 0.91-1.0, false contacts <= 2.3 %, messages per
impacted 2.25-2.46, silent-failure precision 0.86-1.0 and <= 0.01 false alarms per
healthy cell-day); a change that breaks a detector, a rule or the walk-ins falls
through them. The goals themselves are measured by `python -m bench.quality_matrix`.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from forewarn.cli import main


@pytest.mark.parametrize("seed", [21, 22])
def test_a_night_on_60_sites_stays_above_the_quality_floor(tmp_path: Path, seed: int) -> None:
    events, truth, out = tmp_path / "events.jsonl", tmp_path / "truth.jsonl", tmp_path / "out"
    assert main(["simulate", "--out", str(events), "--seed", str(seed), "--sites", "60",
                 "--hours", "12", "--start", "2026-11-24T18:00:00Z"]) == 0
    assert main(["run", "--input", str(events), "--out", str(out), "--truth", str(truth),
                 "--metrics-port", "-1", "--log-level", "warning"]) == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    q, sf = summary["quality"], summary["silent_failures"]
    assert q["reachable_complainers"] >= 40
    assert q["recall_before_complaint"] >= 0.75
    assert q["precision"] >= 0.9 and q["outage_notices_checked"] >= 200
    walk = q["precision_by_rule"]["walk-in-notice"]
    assert walk["sent"] >= 5 and walk["precision"] >= 0.85
    assert q["false_contact_share"] <= 0.1
    assert q["messages_per_impacted"] <= 2.6
    assert sf["precision"] >= 0.8 and sf["false_alarms_per_healthy_cell_day"] <= 0.02
