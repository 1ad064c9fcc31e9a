"""Snapshots that name the stages' classes by their old top-level modules
(``dataflows.care.CareShard``, from before the stages were subpackages of ``forewarn``)
pass the pickle check and load as today's classes (``forewarn.dataflows.care.CareShard``):
an operator resumes from a recovery store written by that version."""

from __future__ import annotations

import pickle

import pytest

from forewarn.dataflows.care import CareShard
from forewarn.dataflows.messages import Tick
from forewarn.dataflows.propensity import PropensityModel
from forewarn.safe_pickle import (
    UnsafePickle,
    check_pickle,
    current_name,
    dump_state,
    load_state,
    loads,
)
from tests.snapshot_fixtures import ROOT


def old_names(blob: bytes) -> bytes:
    """``blob`` as the old version wrote it: its globals named by the old modules.

    Protocols 2 and 3 name a global with the GLOBAL opcode (``c`` module ``\\n`` name
    ``\\n``, no length prefix), so the names can be rewritten in place."""
    assert b"cforewarn.dataflows." in blob
    return blob.replace(b"cforewarn.dataflows.", b"cdataflows.")


def test_the_checked_in_v1_set_names_the_old_modules_and_loads_as_today():
    blob = (ROOT / "v1" / "care.bin").read_bytes()
    assert b"dataflows.care" in blob and b"forewarn.dataflows" not in blob
    check_pickle(pickle.dumps(blob))  # as Bytewax stores it: a pickle of these bytes
    care = load_state(blob)
    assert type(care) is CareShard


def test_an_old_name_loads_as_the_class_of_today():
    value = [Tick(at=12.5), {"x": Tick(at=3.0)}]
    blob = old_names(pickle.dumps(value, protocol=3))
    assert b"cdataflows.messages\nTick\n" in blob
    check_pickle(blob)
    back = loads(blob)
    assert back == value and type(back[0]) is Tick
    versioned = old_names(dump_state(value)[:16] + pickle.dumps(value, protocol=3))
    assert load_state(versioned) == value


def test_an_old_name_of_the_propensity_model_method_is_allowed():
    model = PropensityModel()
    blob = old_names(pickle.dumps(model, protocol=3))
    assert b"cdataflows.propensity\nPropensityModel\n" in blob
    check_pickle(blob)
    assert type(loads(blob)) is PropensityModel


def test_the_renaming_opens_nothing_else():
    assert current_name("dataflows.flow") == "forewarn.dataflows.flow"
    with pytest.raises(UnsafePickle, match="forewarn.dataflows.flow.build_flow"):
        check_pickle(b"cdataflows.flow\nbuild_flow\n(tR.")
    with pytest.raises(UnsafePickle, match="forewarn.simulator.cli.main"):
        loads(b"csimulator.cli\nmain\n(tR.")
    with pytest.raises(UnsafePickle, match="os.system"):
        check_pickle(b"cos\nsystem\n(S'true'\ntR.")


def test_records_in_the_dataclasses_own_pickle_format_load_with_new_fields_defaulted():
    """Snapshots written before records pickled by field values (ByFields) hold the
    dataclasses' own state, the values in field order: a record that gained fields since
    (at the end) loads with their defaults, and pickles again."""
    import copyreg

    from forewarn.dataflows.care import Suppressed
    from forewarn.model import Incident

    class Old:  # what pickle made of a Suppressed before it had incident_id and evidence
        def __init__(self, cls: type, values: list) -> None:
            self.cls, self.values = cls, values

        @property  # type: ignore[misc]
        def __class__(self):  # pickle checks that __newobj__'s class is the object's
            return self.cls

        def __reduce_ex__(self, protocol):
            return copyreg.__newobj__, (self.cls,), self.values

    held = pickle.loads(pickle.dumps(Old(Suppressed, ["r1", "outage_notice", "quiet_hours",
                                                      60.0])))
    assert held == Suppressed("r1", "outage_notice", "quiet_hours", 60.0, None, ())
    assert pickle.loads(pickle.dumps(held)) == held
    old = ["INC-1", "open", "outage", "site", "S1", ("S1-C1",), 10.0, None, 3, 130.0,
           "north", None, ("alarm:A1",), None, None]
    incident = pickle.loads(pickle.dumps(Old(Incident, old)))
    assert incident.parent_id is None and incident.child_ids == () and incident.sites == ()
    assert pickle.loads(pickle.dumps(incident)) == incident
