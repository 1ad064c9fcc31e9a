"""Complaint propensity: an online classifier learnt from the ``complaint`` stream.

Pure logic, no Bytewax. Three pieces:

* :class:`CareFeatures` — what the subscriber stage knows at an *exposure* (an outage
  notice, an escalation, a dropped-call note, a silent-failure notice): profile
  (segment, plan, tenure), exposure (service lost in the last 24 h, current outage
  length, whole-site outage, age of the position that placed them there), drops in the
  last 24 h, contacts already sent in 24 h, hour of day (kept as a field; not fed to
  the model: in a 6 h run it only tracks the label stream). Nothing known only later.
* :class:`PropensityModel` — a river pipeline ``(one-hot(segment, plan, trigger) ∪
  standard-scaled numbers) | LogisticRegression``, **one for the whole flow** (in
  the dispatch step's state, :mod:`forewarn.dataflows.dispatch`), never per subscriber.
  Progressive validation: every labelled example is first scored (ROC AUC, log
  loss), then learnt. ``version`` is ``p<updates>``;
  :meth:`to_bytes` / :meth:`from_bytes` are its snapshot (~4 KB pickled).
* :class:`ExposureBook` — delayed labels, one event at a time, per subscriber (it
  lives in the subscriber's state, a few tuples): an exposure at ``t`` is *positive*
  when a complaint arrives in ``(t, t + horizon]``, *negative* when none did. Every
  label, positive or negative, is settled by the first event later than
  ``t + horizon`` (not by the complaint): otherwise positives reach the model about an
  hour before the negatives of the same outage (the learner drifts with the label
  mix), and at the end of a run the exposures still inside their horizon would be
  learnt and validated only when positive (survivorship). Labels use only the past of
  the event that settles them: no future leakage, and the same labels at any speed.

>>> f = CareFeatures("vip", "Premier", 30, "outage", 0.0, 120.0, True, 0, 0, 9)
>>> m = PropensityModel()
>>> 0.0 < m.score(f) < 1.0 and m.version
'p0'
>>> book = ExposureBook()
>>> book.expose(1000.0, f, 0.3, "p0")
>>> book.complaint(1500.0)  # remembered; settled when the horizon has passed
[]
>>> [x.label for x in book.expire(1000.0 + HORIZON_S + 1)]
[True]
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from typing import NamedTuple

from river import compose, linear_model, metrics, optim, preprocessing

from forewarn import safe_pickle

HORIZON_S = 2 * 3600.0
CATEGORICAL = ("segment", "plan", "trigger")
NUMERIC = ("tenure", "lost_h_24h", "outage_min", "site", "drops", "contacts", "age_min")


@dataclass(frozen=True, slots=True)
class CareFeatures:
    """What the subscriber stage knows when it scores (and later learns from) an exposure."""

    segment: str  # consumer | business | vip
    plan: str
    tenure_months: float
    trigger: str  # outage | sleeping | degradation | drops | escalation
    lost_s_24h: float  # service lost in the 24 h before this exposure (other incidents)
    outage_s: float  # length of the current outage so far (0 for drops)
    site_outage: bool  # the whole site is down (few can reselect)
    drops_24h: int
    contacts_24h: int  # actions already sent to them in the last 24 h (set by dispatch)
    hour: int  # local hour of day
    position_age_s: float = 0.0  # age of the observation that placed them on the cell

    def as_dict(self) -> dict[str, float | str]:
        """The model's input: categoricals as strings, numbers squashed to sane ranges."""
        angle = 2 * math.pi * (self.hour % 24) / 24
        return {
            "segment": self.segment,
            "plan": self.plan or "none",
            "trigger": self.trigger,
            "tenure": math.log1p(max(0.0, self.tenure_months)),
            "lost_h_24h": min(self.lost_s_24h, 86400.0) / 3600,
            "outage_min": min(self.outage_s, 14400.0) / 60,
            "site": 1.0 if self.site_outage else 0.0,
            "drops": float(min(self.drops_24h, 10)),
            "contacts": float(min(self.contacts_24h, 10)),
            "age_min": min(self.position_age_s, 7200.0) / 60,
            "hour_sin": math.sin(angle),
            "hour_cos": math.cos(angle),
        }


def _pipeline(lr: float, l2: float) -> compose.Pipeline:
    union = compose.TransformerUnion(
        compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder(),
        compose.Select(*NUMERIC) | preprocessing.StandardScaler(),
    )
    return union | linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)


class PropensityModel:
    """Online complaint-propensity classifier with progressive validation."""

    def __init__(self, lr: float = 0.01, l2: float = 1e-4) -> None:
        self.pipeline = _pipeline(lr, l2)
        self.updates = 0
        self.positives = 0
        self.auc = metrics.ROCAUC(n_thresholds=50)
        self.log_loss = metrics.LogLoss()
        self.warm_updates = self.warm_positives = 0  # learnt before this run (warm start)

    @property
    def version(self) -> str:
        """Model version: the number of examples learnt (``p0`` untrained)."""
        return f"p{self.updates}"

    def score(self, features: CareFeatures) -> float:
        """Probability of a complaint within the horizon."""
        proba = self.pipeline.predict_proba_one(features.as_dict())
        return float(proba.get(True, 0.0))

    def learn(self, features: CareFeatures, label: bool, scored: float | None = None) -> float:
        """Progressive validation, then learn; returns the score that was validated.

        ``scored`` is the score given at exposure time (:class:`Label` ``.score``): with
        delayed labels that is the honest one to validate. Scoring again at settlement
        time leaks: labels settle in clusters (an outage's complainers within the hour,
        its non-complainers together at the horizon) and the online model follows the
        recent label stream (measured: ROC AUC 0.97 instead of ~0.7 on the simulator).
        """
        x = features.as_dict()
        if scored is None:
            scored = float(self.pipeline.predict_proba_one(x).get(True, 0.0))
        p = scored
        if self.updates:
            self.auc.update(label, p)
            self.log_loss.update(label, p)
        self.pipeline.learn_one(x, label)
        self.updates += 1
        self.positives += label
        return p

    def report(self) -> dict:
        """Progressive metrics so far."""
        n, pos = self.updates - self.warm_updates, self.positives - self.warm_positives
        return {
            "version": self.version,
            "examples": n,
            "warm_start_examples": self.warm_updates,
            "positive_rate": round(pos / n, 4) if n else None,
            "roc_auc": round(float(self.auc.get()), 4) if n > 1 else None,
            "log_loss": round(float(self.log_loss.get()), 4) if n > 1 else None,
        }

    # -- snapshot -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Cheap snapshot: the pickled pipeline, counters and metrics (a few KB)."""
        return pickle.dumps((self.pipeline, self.updates, self.positives, self.auc,
                             self.log_loss, self.warm_updates, self.warm_positives),
                            protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> PropensityModel:
        model = cls.__new__(cls)
        (model.pipeline, model.updates, model.positives, model.auc, model.log_loss,
         *warm) = safe_pickle.loads(data)  # river classes only: it may come from a file
        model.warm_updates, model.warm_positives = warm or (0, 0)
        return model

    @classmethod
    def warm_start(cls, data: bytes) -> PropensityModel:
        """A model learnt elsewhere (an earlier day's snapshot) whose progressive figures
        start afresh: the report then covers this run's exposures only."""
        model = cls.from_bytes(data)
        model.auc, model.log_loss = metrics.ROCAUC(n_thresholds=50), metrics.LogLoss()
        model.warm_updates, model.warm_positives = model.updates, model.positives
        return model

    def __reduce__(self):  # copy.deepcopy / pickle go through the compact snapshot
        return (PropensityModel.from_bytes, (self.to_bytes(),))


class Label(NamedTuple):
    """A settled exposure: what to learn, and what was predicted for it."""

    features: CareFeatures
    label: bool
    score: float  # the score given at exposure time
    at: float  # exposure time
    version: str  # model version that gave the score


@dataclass(slots=True)
class ExposureBook:
    """A subscriber's exposures waiting for their label (part of the subscriber state)."""

    horizon_s: float = HORIZON_S
    # (exposure time, features, score given, model version)
    pending: list[tuple[float, CareFeatures, float, str]] = field(default_factory=list)
    complaints: list[float] = field(default_factory=list)  # times, while exposures pend

    def expose(self, at: float, features: CareFeatures, score: float, version: str) -> None:
        """Remember an exposure scored at ``at``."""
        self.pending.append((at, features, score, version))

    def complaint(self, at: float) -> list[Label]:
        """A complaint at ``at``: remembered for the pending exposures' labels (positive
        when in ``(t, t + horizon]``); returns the labels ``at`` settles."""
        if self.pending:
            self.complaints.append(at)
        return self.expire(at)

    def expire(self, now: float) -> list[Label]:
        """Event time of the subscriber reached ``now``: exposures whose horizon has passed
        are settled, positive if a complaint came within it (call it on every event of
        the subscriber, and on ticks: a label is settled by the first event past its
        horizon)."""
        if not self.pending or now <= self.pending[0][0] + self.horizon_s:
            return []
        out, keep = [], []
        for item in self.pending:
            t, f, s, v = item
            if now > t + self.horizon_s:
                hit = any(t < c <= t + self.horizon_s for c in self.complaints)
                out.append(Label(f, hit, s, t, v))
            else:
                keep.append(item)
        self.pending = keep
        first = min((t for t, *_ in keep), default=None)
        self.complaints = [c for c in self.complaints if first is not None and c > first]
        return out
