"""Complaint propensity (dataflows/propensity.py): learning, labelling, snapshots."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

from forewarn.dataflows.propensity import CareFeatures, ExposureBook, PropensityModel

#: Stated floor on a stream whose complaints depend on what is known at exposure time.
SYNTHETIC_AUC_FLOOR = 0.65  # the Bayes-optimal AUC of this stream is ~0.72


def _features(rng: random.Random) -> tuple[CareFeatures, float]:
    seg = rng.choices(("consumer", "business", "vip"), (85, 12, 3))[0]
    site = rng.random() < 0.4
    outage = rng.choice((120.0, 1800.0, 3600.0))
    f = CareFeatures(seg, rng.choice(("Basic 5GB", "Unlimited")), rng.randint(1, 120),
                     "outage" if outage == 120 else "escalation", 0.0, outage, site,
                     rng.randint(0, 3), rng.randint(0, 2), rng.randint(0, 23),
                     rng.uniform(0, 3600))
    p = {"consumer": 0.1, "business": 0.25, "vip": 0.4}[seg] * (2.0 if site else 1.0) * (
        1.0 + outage / 3600)
    return f, min(p, 0.95)


def test_learns_a_known_propensity_with_progressive_validation() -> None:
    rng, model = random.Random(1), PropensityModel()
    for _ in range(4000):
        f, p = _features(rng)
        model.learn(f, rng.random() < p)
    report = model.report()
    assert report["examples"] == 4000 and report["version"] == "p4000"
    assert report["roc_auc"] > SYNTHETIC_AUC_FLOOR, report
    vip = CareFeatures("vip", "Premier", 12, "escalation", 0, 3600, True, 0, 0, 10, 60)
    low = CareFeatures("consumer", "Basic 5GB", 12, "outage", 0, 120, False, 0, 0, 10, 60)
    assert model.score(vip) > 0.5 > model.score(low)


def test_snapshot_round_trip_gives_the_same_predictions() -> None:
    rng, model = random.Random(2), PropensityModel()
    for _ in range(500):
        f, p = _features(rng)
        model.learn(f, rng.random() < p)
    blob = model.to_bytes()
    assert len(blob) < 32_000
    for other in (PropensityModel.from_bytes(blob), pickle.loads(pickle.dumps(model)),
                  copy.deepcopy(model)):
        assert other.version == model.version
        probe = [_features(random.Random(seed))[0] for seed in range(20)]
        # equal to the last bits or so: river's one-hot keeps seen values in sets, whose
        # order after unpickling can change the summation order of the dot product
        assert [other.score(f) for f in probe] == pytest.approx(
            [model.score(f) for f in probe], rel=1e-12, abs=0)
        assert other.report() == model.report()


def test_delayed_labels_use_only_the_past() -> None:
    f, _ = _features(random.Random(3))
    book = ExposureBook(horizon_s=7200)
    book.expose(1000.0, f, 0.2, "p0")
    book.expose(5000.0, f, 0.3, "p1")
    assert book.expire(8000.0) == []  # 1000 + 7200 not yet passed
    settled = book.expire(8201.0)
    assert [(x.at, x.label, x.version) for x in settled] == [(1000.0, False, "p0")]
    # a complaint inside the horizon makes the pending exposure positive, settled (like
    # the negatives) only once its horizon has passed: no class reaches the model first,
    # and an exposure still inside its horizon at the end of a run is never learnt
    assert book.complaint(9000.0) == [] and len(book.pending) == 1
    assert book.expire(12200.0) == []
    assert [(x.at, x.label) for x in book.expire(12201.0)] == [(5000.0, True)]
    assert book.pending == [] and book.complaints == []
    # a complaint before (or at) the exposure says nothing about it
    book.expose(10000.0, f, 0.1, "p2")
    assert book.complaint(10000.0) == [] and len(book.pending) == 1


def test_dispatch_model_survives_a_recovery_snapshot_with_the_same_predictions():
    """The flow keeps the model in the dispatch step's state: what Bytewax snapshots
    (with recovery on) resumes to a model that scores exactly as before."""
    from forewarn.dataflows.care import ComplaintSeen
    from forewarn.dataflows.dispatch import Dispatcher
    from forewarn.dataflows.flow import DispatchLogic, FlowConfig
    from forewarn.dataflows.messages import Frontier
    from forewarn.model import Action
    from forewarn.rules.rulebook import load_rulebook

    book = load_rulebook()
    cfg = FlowConfig(book=book, durable=True)
    logic = DispatchLogic(cfg, None)
    f = CareFeatures("consumer", "Basic", 12, "outage", 0.0, 300.0, True, 1, 0, 10)
    for i in range(40):  # exposures, half of them followed by a complaint
        a = Action(f"a{i}", f"S{i}", "outage_notice", "sms", "en", "m", "outage-notice", 1,
                   "I", (), 1000.0 + i, features=f)
        logic.on_batch([a])
        if i % 2:
            logic.on_batch([ComplaintSeen(f"S{i}", 1500.0 + i)])
    logic.on_batch([ComplaintSeen("S0", 8230.0)])  # past the first horizons: they settle
    logic.on_batch([Frontier(8231.0)])  # every action before it has arrived: taken
    assert logic.dispatch.model.updates > 0 and logic.dispatch.exposures
    resumed = DispatchLogic(cfg, logic.snapshot())
    assert isinstance(resumed.dispatch, Dispatcher)
    assert resumed.dispatch.model.version == logic.dispatch.model.version
    assert resumed.dispatch.model.score(f) == pytest.approx(logic.dispatch.model.score(f),
                                                           rel=1e-12, abs=0)
    assert set(resumed.dispatch.exposures) == set(logic.dispatch.exposures)
