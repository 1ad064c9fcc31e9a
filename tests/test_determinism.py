"""Same input, same outputs: at any replay speed, epoch cut and worker count."""

from __future__ import annotations

import orjson
import pytest

from forewarn.runner import Collected, run_collect
from rules.rulebook import load_rulebook
from simulator import ScenarioConfig, simulate


@pytest.fixture(scope="module")
def scenario():
    # 6 h over 24 sites: enough subscribers move between sites around outages that a
    # verdict judged on anything but the site's ordered stream shows (until session 6,
    # care judged moves on a 2 h position history that a fast replay outran: 226
    # actions in the slow replay below against 246 at full speed)
    return simulate(ScenarioConfig(seed=11, sites=24, hours=6.0, subscribers_per_cell=12))


MODEL_EVIDENCE = ("propensity:", "model:")


def canonical(c: Collected) -> dict[str, list[bytes]]:
    """Outputs in a canonical order; the propensity score is set aside (see below)."""
    out = {k: sorted(getattr(c, k)) for k in ("incidents", "dead_letters")}
    actions = []
    for line in c.actions:
        a = orjson.loads(line)
        a["evidence"] = [e for e in a["evidence"] if not e.startswith(MODEL_EVIDENCE)]
        actions.append(orjson.dumps(a))
    out["actions"] = sorted(actions)
    return out


@pytest.fixture(scope="module")
def reference(scenario):
    got = canonical(run_collect(scenario.lines, load_rulebook()))
    assert got["actions"], "the scenario must produce actions for this test to mean anything"
    assert got["incidents"] and got["dead_letters"]
    return got


def test_slow_replay_in_small_batches_and_short_epochs_gives_the_same_outputs(scenario,
                                                                               reference):
    slow = run_collect(scenario.lines, load_rulebook(), batch=37, pause_s=0.0005, epoch_s=0.01)
    assert canonical(slow) == reference


def test_two_workers_give_the_same_outputs(scenario, reference):
    assert canonical(run_collect(scenario.lines, load_rulebook(), workers=2)) == reference


def test_propensity_scores_are_in_the_evidence(scenario):
    """Scores depend on the order the one online model learns in, which batching and
    worker count vary; ids, event times and every other field do not (above)."""
    got = run_collect(scenario.lines, load_rulebook())
    actions = [orjson.loads(a) for a in got.actions]
    scored = [a for a in actions if a["kind"] in ("outage_notice", "apology")]
    assert scored and all(any(e.startswith("propensity:") for e in a["evidence"])
                          and any(e.startswith("model:p") for e in a["evidence"])
                          for a in scored)
    assert not any(e.startswith("propensity:") for a in actions
                   if a["kind"] == "restored_notice" for e in a["evidence"])


def test_action_ids_are_unique_and_event_times_are_event_time(scenario, reference):
    actions = [orjson.loads(a) for a in reference["actions"]]
    assert len({a["action_id"] for a in actions}) == len(actions)
    first, last = scenario.lines[0], scenario.lines[-1]
    assert first and last
    assert all(a["event_time"].startswith("2026-11-23") for a in actions)
