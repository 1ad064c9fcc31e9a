"""A recovery store of another input layout (forewarn/recovery_store.py
check_input_parts): refused, whole or as one process's share."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest

from forewarn.recovery_store import RecoveryStoreError, _scan_snapshots, check_input_parts
from forewarn.safe_pickle import UnsafePickle


def _store(directory: Path, *keys: str) -> Path:
    directory.mkdir()
    conn = sqlite3.connect(directory / "part-0.sqlite3")
    conn.execute("CREATE TABLE snaps (step_id, state_key, snap_epoch, ser_change)")
    conn.executemany("INSERT INTO snaps VALUES (?, ?, 1, NULL)",
                     [("forewarn.input", k) for k in keys] + [("forewarn.site", "S1")])
    conn.commit()
    conn.close()
    return directory


def test_the_same_layout_or_a_new_store_is_taken(tmp_path: Path) -> None:
    check_input_parts(_store(tmp_path / "a", "kafka-0", "kafka-1"), "forewarn.input",
                      ["kafka-0", "kafka-1"])
    check_input_parts(_store(tmp_path / "b"), "forewarn.input", ["kafka"])
    # a process's share (-a) holds some of the keys
    check_input_parts(_store(tmp_path / "c", "kafka-1"), "forewarn.input",
                      ["kafka-0", "kafka-1"], complete=False)


@pytest.mark.parametrize(("found", "expected", "complete"), [
    (("kafka",), ["kafka-0", "kafka-1"], True),  # one partition per topic, now two
    (("kafka-0", "kafka-1"), ["kafka-0", "kafka-1", "kafka-2"], True),  # partitions added
    (("kafka-0", "kafka-1", "kafka-2"), ["kafka-0", "kafka-1"], False),  # fewer, a share
    (("kafka-0", "kafka-1"), ["kafka"], True),  # back to one
])
def test_another_layout_is_refused_with_what_to_do(tmp_path: Path, found, expected,
                                                   complete) -> None:
    store = _store(tmp_path / "s", *found)
    with pytest.raises(RecoveryStoreError) as err:
        check_input_parts(store, "forewarn.input", expected, complete=complete)
    text = str(err.value)
    assert f"of the source partitions {', '.join(sorted(found))}" in text
    assert f"this run reads {', '.join(expected)}" in text
    assert f"mv {store} {store}.old" in text


def test_only_the_snapshots_a_resume_loads_are_checked_against_this_run(tmp_path: Path):
    """The check of a snapshot against this run (``resume``) runs on each key's latest
    snapshot at or before the resume epoch and its latest before it (a key whose state
    was dropped at the resume epoch: only the one before), never on older rows, which a
    resume never reads."""
    tmp_path.mkdir(exist_ok=True)
    conn = sqlite3.connect(tmp_path / "part-0.sqlite3")
    conn.execute("CREATE TABLE snaps (step_id, state_key, snap_epoch, ser_change)")
    rows = [("forewarn.site", "S1", e, pickle.dumps(b"epoch %d" % e)) for e in (1, 4, 5, 9)]
    rows += [("forewarn.site", "S2", 3, pickle.dumps(b"epoch 3")),
             ("forewarn.site", "S2", 5, None)]  # S2 dropped its state at epoch 5
    conn.executemany("INSERT INTO snaps VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    seen: list[tuple[str, bytes]] = []
    _scan_snapshots(tmp_path / "part-0.sqlite3", lambda s, b: seen.append((s, b)), upto=5)
    assert seen == [("site", b"epoch 5"), ("site", b"epoch 4"), ("site", b"epoch 3")]

    def refuse(stage: str, blob: bytes) -> None:
        if blob == b"epoch 5":
            raise UnsafePickle("site.members[item 0] is a list, not a tuple")

    with pytest.raises(RecoveryStoreError) as refused:
        _scan_snapshots(tmp_path / "part-0.sqlite3", refuse, upto=5)
    message = str(refused.value)
    assert "key 'S1', epoch 5 does not fit this Forewarn: site.members[item 0]" in message
    assert "resume with the version that wrote it" in message
    assert "someone or something else" not in message  # (not tampering: another version)
