"""The propensity model's details (dataflows/propensity.py): its inputs, its progressive
figures, warm starts and old snapshots, and where a label's horizon begins and ends."""

from __future__ import annotations

import math
import pickle

import pytest
from river import metrics

from forewarn.dataflows.propensity import (
    HORIZON_S,
    CareFeatures,
    ExposureBook,
    Label,
    PropensityModel,
)

F = CareFeatures("consumer", "Basic", 12, "outage", 0.0, 300.0, True, 1, 0, 10)


def test_model_inputs_are_squashed_to_sane_ranges():
    inside = CareFeatures("business", "Unlimited", 12, "outage", 7200.0, 600.0, True, 3, 2, 0,
                          300.0)
    assert inside.as_dict() == pytest.approx({
        "segment": "business", "plan": "Unlimited", "trigger": "outage",
        "tenure": math.log1p(12), "lost_h_24h": 2.0, "outage_min": 10.0, "site": 1.0,
        "drops": 3.0, "contacts": 2.0, "age_min": 5.0, "hour_sin": 0.0, "hour_cos": 1.0})
    beyond = CareFeatures("vip", "", -5, "drops", 90000.0, 20000.0, False, 12, 11, 30, 8000.0)
    assert beyond.as_dict() == pytest.approx({
        "segment": "vip", "plan": "none", "trigger": "drops", "tenure": 0.0,
        "lost_h_24h": 24.0, "outage_min": 240.0, "site": 0.0, "drops": 10.0,
        "contacts": 10.0, "age_min": 120.0, "hour_sin": 1.0, "hour_cos": 0.0}, abs=1e-12)
    assert F.position_age_s == 0.0


def test_an_untrained_model_reports_no_figures():
    assert PropensityModel().report() == {
        "version": "p0", "examples": 0, "warm_start_examples": 0, "positive_rate": None,
        "roc_auc": None, "log_loss": None}


def test_the_first_example_is_learnt_but_not_validated():
    m = PropensityModel()
    assert m.learn(F, True, 0.9) == 0.9
    assert m.report() == {"version": "p1", "examples": 1, "warm_start_examples": 0,
                          "positive_rate": 1.0, "roc_auc": None, "log_loss": None}
    assert m.learn(F, False, 0.2) == 0.2
    r = m.report()
    # only the second example is validated: -ln(1 - 0.2)
    assert r["log_loss"] == round(-math.log(0.8), 4) and r["positive_rate"] == 0.5
    assert r["version"] == "p2" and r["examples"] == 2 and r["roc_auc"] is not None


def test_learn_without_a_score_validates_the_models_own():
    m = PropensityModel()
    assert m.learn(F, True) == pytest.approx(0.5)  # untrained: 1/2
    moved = m.score(F)
    assert moved != pytest.approx(0.5)
    assert m.learn(F, True) == pytest.approx(moved)


def test_a_warm_start_keeps_the_model_and_counts_afresh():
    m = PropensityModel()
    for label in (True, False, True):
        m.learn(F, label, 0.5)
    warm = PropensityModel.warm_start(m.to_bytes())
    assert warm.score(F) == pytest.approx(m.score(F), rel=1e-12)
    assert warm.report() == {"version": "p3", "examples": 0, "warm_start_examples": 3,
                             "positive_rate": None, "roc_auc": None, "log_loss": None}
    warm.learn(F, False, 0.3)
    warm.learn(F, True, 0.6)
    r = warm.report()
    assert (r["examples"], r["positive_rate"]) == (2, 0.5)
    # both are validated (the model is trained), the three learnt before are not in it
    assert r["log_loss"] == round((-math.log(0.7) - math.log(0.6)) / 2, 4)
    # its snapshot keeps the warm-start counts
    again = PropensityModel.from_bytes(warm.to_bytes())
    assert again.report() == r


def test_a_snapshot_from_before_warm_starts_loads_with_none():
    m = PropensityModel()
    m.learn(F, True, 0.5)
    old = pickle.dumps((m.pipeline, m.updates, m.positives, m.auc, m.log_loss))
    loaded = PropensityModel.from_bytes(old)
    assert (loaded.warm_updates, loaded.warm_positives) == (0, 0)
    assert loaded.report()["examples"] == 1


def test_a_labels_horizon_is_open_at_the_exposure_and_closed_at_its_end():
    book = ExposureBook()
    assert book.horizon_s == HORIZON_S == 7200.0
    assert book.complaint(50.0) == [] and book.complaints == []  # nothing pending: forgotten
    book.expose(100.0, F, 0.1, "p0")
    book.expose(200.0, F, 0.2, "p1")
    book.complaint(100.0)  # at the first exposure: not after it, inside the second's
    book.complaint(100.0 + HORIZON_S)  # the last instant of the first's horizon
    assert book.expire(100.0 + HORIZON_S) == []  # not yet past it
    assert book.expire(100.0 + HORIZON_S + 0.5) == [Label(F, True, 0.1, 100.0, "p0")]
    # complaints at or before the first pending exposure are forgotten
    assert book.complaints == [100.0 + HORIZON_S]
    book.expose(9000.0, F, 0.3, "p2")
    (second,) = book.expire(200.0 + HORIZON_S + 1)
    assert second == Label(F, True, 0.2, 200.0, "p1")
    assert book.complaints == []  # none after 9000
    (third,) = book.expire(9000.0 + HORIZON_S + 1)
    assert third.label is False and book.pending == [] and book.complaints == []


def test_a_complaint_returns_the_labels_it_settles():
    book = ExposureBook(horizon_s=100.0)
    book.expose(0.0, F, 0.4, "p0")
    book.expose(500.0, F, 0.5, "p1")
    assert book.complaint(150.0) == [Label(F, False, 0.4, 0.0, "p0")]
    assert book.complaints == []  # 150 is before the exposure still pending
    assert book.complaint(550.0) == []
    assert book.expire(601.0) == [Label(F, True, 0.5, 500.0, "p1")]


def test_figures_are_rounded_to_four_places():
    m = PropensityModel()
    for label, score in ((True, 0.9), (False, 0.3), (False, 0.6), (True, 0.35)):
        m.learn(F, label, score)
    r = m.report()
    assert r["positive_rate"] == 0.5
    m.learn(F, False, 0.2)
    m.learn(F, False, 0.7)
    r = m.report()
    assert r["positive_rate"] == round(2 / 6, 4) == 0.3333
    assert 0 < r["roc_auc"] < 1 and r["roc_auc"] == round(r["roc_auc"], 4)
    assert r["log_loss"] == round(r["log_loss"], 4)
    auc = metrics.ROCAUC(n_thresholds=50)
    for label, score in ((False, 0.3), (False, 0.6), (True, 0.35), (False, 0.2), (False, 0.7)):
        auc.update(label, score)
    assert r["roc_auc"] == round(auc.get(), 4)


def test_a_warm_started_model_measures_auc_as_a_fresh_one_does():
    m = PropensityModel()
    m.learn(F, True, 0.5)
    warm = PropensityModel.warm_start(m.to_bytes())
    fresh = metrics.ROCAUC(n_thresholds=50)
    for label, score in ((True, 0.41), (False, 0.405), (True, 0.39), (False, 0.2)):
        warm.learn(F, label, score)
        fresh.update(label, score)
    assert warm.report()["roc_auc"] == round(fresh.get(), 4)


def test_a_complaint_at_the_exposure_itself_is_not_after_it():
    book = ExposureBook(horizon_s=100.0)
    book.expose(0.0, F, 0.4, "p0")
    book.expose(10.0, F, 0.4, "p0")
    book.complaint(10.0)
    assert [x.label for x in book.expire(200.0)] == [True, False]


def test_an_exposure_is_settled_only_once_past_its_own_horizon():
    book = ExposureBook(horizon_s=100.0)
    book.expose(0.0, F, 0.4, "p0")
    book.expose(50.0, F, 0.5, "p1")
    assert [x.at for x in book.expire(150.0)] == [0.0]  # 150 is the last instant of 50's
    assert [x.at for x in book.expire(150.5)] == [50.0]
