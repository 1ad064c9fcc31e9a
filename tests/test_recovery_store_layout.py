"""A recovery store of another input layout (forewarn/recovery_store.py
check_input_parts): refused, whole or as one process's share."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forewarn.recovery_store import RecoveryStoreError, check_input_parts


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
