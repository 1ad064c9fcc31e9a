"""A recovery directory that is damaged or tampered with never resumes silently and never
runs code; SIGINT/SIGTERM stop a Kafka run cleanly. Against a REAL broker and a REAL
recovery directory: a flow runs with ``--recovery`` and is killed with SIGKILL mid-run
(WAL files and all), then each test damages a copy of that directory the way a disk,
a bad backup or an attacker would and restarts ``forewarn run`` on it."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson
import pytest

from forewarn.connectors.kafka_publish import Topics, publish_lines
from forewarn.dataflows import records as state_records
from forewarn.dataflows.flow import FlowConfig, check_resume
from forewarn.recovery_store import RecoveryStoreError, check_store, wal_lost_commits
from forewarn.rules.rulebook import load_rulebook
from forewarn.safe_pickle import UnsafePickle, check_pickle, dump_record, loads
from tests.kafka_flow_helpers import (
    expected,
    flow_cmd,
    fresh_topics,
    records,
    start_flow,
    tail,
    wait_until,
)
from tests.kafka_helpers import kafka_broker  # noqa: F401  (fixture)

EPOCHS_BEFORE_KILL = 6  # enough transactions in every WAL for one to sit mid-file


@dataclass(frozen=True)
class Store:
    """A recovery directory left by a SIGKILLed run, and the run's broker and topics."""

    dir: Path
    bootstrap: str
    topics: Topics


def _frontier(directory: Path) -> int:
    """The highest worker frontier written so far (read-only; the flow keeps writing)."""
    best = 0
    for part in directory.glob("part-*.sqlite3"):
        conn = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        try:
            best = max(best, conn.execute(
                "SELECT COALESCE(MAX(worker_frontier), 0) FROM fronts").fetchone()[0])
        except sqlite3.Error:
            pass  # the flow is creating it
        finally:
            conn.close()
    return best


@pytest.fixture(scope="module")
def killed_store(kafka_broker, tmp_path_factory) -> Store:  # noqa: F811
    config = {"bootstrap.servers": kafka_broker.bootstrap}
    topics = fresh_topics(config, partitions=2)
    publish_lines(config, expected().lines, topics=topics)
    base = tmp_path_factory.mktemp("hostile-recovery")
    store, log = base / "recovery", base / "flow.log"
    proc = start_flow(flow_cmd(kafka_broker.bootstrap, topics, "--recovery", str(store),
                               "--snapshot-interval", "1"), log)
    try:
        wait_until(lambda: _frontier(store) >= EPOCHS_BEFORE_KILL, 90,
                   f"epoch {EPOCHS_BEFORE_KILL} in the recovery store", proc=proc, log=log)
    finally:
        proc.kill()
        proc.wait()
    assert list(store.glob("part-*.sqlite3-wal")), "a SIGKILLed run leaves its WAL files"
    return Store(store, kafka_broker.bootstrap, topics)


@pytest.fixture
def store(killed_store: Store, tmp_path: Path) -> Store:
    """A private copy of the killed run's directory, to damage."""
    copy = tmp_path / "recovery"
    shutil.copytree(killed_store.dir, copy)
    return Store(copy, killed_store.bootstrap, killed_store.topics)


def _restart(store: Store, log: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = flow_cmd(store.bootstrap, store.topics, "--recovery", str(store.dir),
                   "--snapshot-interval", "1", "--exit-at-end", *extra)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    log.write_text(done.stdout + done.stderr)
    return done


def _assert_refused(done: subprocess.CompletedProcess, *names: str) -> str:
    err = done.stderr
    assert done.returncode == 2, f"rc {done.returncode}:\n{err[-3000:]}"
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    refusal = [line for line in err.splitlines() if line.startswith("forewarn run: ")]
    assert len(refusal) == 1, err[-3000:]
    for name in names:
        assert name in refusal[0], refusal[0]
    assert "start again" in refusal[0] or "chmod" in refusal[0], refusal[0]
    return refusal[0]


def _largest_wal(directory: Path) -> Path:
    return max(directory.glob("part-*.sqlite3-wal"), key=lambda p: p.stat().st_size)


# ---- the killed run's directory is accepted, and resumes -----------------------------


def test_clean_restart_resumes_and_loses_nothing(store: Store, tmp_path: Path) -> None:
    report = check_store(store.dir)
    assert report.resume_epoch is not None and report.resume_epoch >= EPOCHS_BEFORE_KILL
    assert report.snapshots_checked > 0
    done = _restart(store, tmp_path / "flow.log", "--log-level", "INFO")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [orjson.loads(line).get("resumed_messages", 0)
               for line in done.stderr.splitlines() if '"kafka input assigned"' in line]
    assert resumed and resumed[0] > 0, "the restart did not resume from the snapshot"
    config = {"bootstrap.servers": store.bootstrap}
    ids = [orjson.loads(r.value)["action_id"] for r in records(config, store.topics.actions)]
    assert set(ids) == expected().action_ids
    assert len(ids) == len(set(ids)), "an action was delivered twice"


# ---- damaged files -------------------------------------------------------------------


def test_zeroed_wal_page_is_refused_naming_the_file(store: Store, tmp_path: Path) -> None:
    wal = _largest_wal(store.dir)
    data = bytearray(wal.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    wal.write_bytes(bytes(data))
    assert wal_lost_commits(wal) is not None
    refusal = _assert_refused(_restart(store, tmp_path / "flow.log"), wal.name)
    assert "fails its checksum" in refusal


def test_truncated_database_is_refused_naming_the_file(store: Store, tmp_path: Path) -> None:
    for wal in store.dir.glob("*-wal"):  # as a clean stop leaves it: all in the database
        wal.unlink()
    for shm in store.dir.glob("*-shm"):
        shm.unlink()
    victim = store.dir / "part-2.sqlite3"
    os.truncate(victim, victim.stat().st_size // 2)
    _assert_refused(_restart(store, tmp_path / "flow.log"), str(victim), "is damaged")


def test_garbage_database_is_refused_naming_the_file(store: Store, tmp_path: Path) -> None:
    victim = store.dir / "part-5.sqlite3"
    victim.write_bytes(os.urandom(victim.stat().st_size))
    _assert_refused(_restart(store, tmp_path / "flow.log"), str(victim), "is damaged")


def test_missing_partition_is_refused(store: Store, tmp_path: Path) -> None:
    for path in store.dir.glob("part-3.sqlite3*"):
        path.unlink()
    refusal = _assert_refused(_restart(store, tmp_path / "flow.log"), "part-3.sqlite3",
                              "is missing")
    assert "7 of its 8 partitions" in refusal


def test_torn_last_write_is_accepted(store: Store) -> None:
    """A write cut short at the end of a WAL is what a crash leaves: not a refusal."""
    wal = _largest_wal(store.dir)
    os.truncate(wal, wal.stat().st_size - 1000)
    assert wal_lost_commits(wal) is None
    check_store(store.dir)


def test_doubled_partition_is_refused(store: Store) -> None:
    shutil.copy(store.dir / "part-1.sqlite3", store.dir / "part-1 (copy).sqlite3")
    with pytest.raises(RecoveryStoreError, match=r"are both partition 1 of 8"):
        check_store(store.dir)


def test_partition_restored_from_an_older_backup_is_refused(store: Store) -> None:
    """A partition as a backup taken at epoch 1 has it, put back among newer ones."""
    victim = store.dir / "part-4.sqlite3"
    conn = sqlite3.connect(victim)  # roll the partition back: as it was at epoch 1
    conn.execute("UPDATE commits SET commit_epoch = 1")
    conn.execute("DELETE FROM snaps WHERE snap_epoch > 1")
    conn.commit()
    conn.close()
    with pytest.raises(RecoveryStoreError, match=r"part-4\.sqlite3 last committed epoch 1"):
        check_store(store.dir)


# ---- code in the store ----------------------------------------------------------------


class _Payload:
    """Pickles to ``os.system(command)``: what an attacker writes into a snapshot row."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _plant(directory: Path, step: str, blob: bytes) -> Path:
    """Put ``blob`` in place of the newest snapshot of ``step`` (the one a resume loads)."""
    for part in sorted(directory.glob("part-*.sqlite3")):
        conn = sqlite3.connect(part)
        try:
            row = conn.execute("SELECT state_key, MAX(snap_epoch) FROM snaps WHERE step_id = ? "
                               "AND ser_change IS NOT NULL", (step,)).fetchone()
            if row[0] is not None:
                conn.execute("UPDATE snaps SET ser_change = ? WHERE step_id = ? AND "
                             "state_key = ? AND snap_epoch = ?", (blob, step, *row))
                conn.commit()
                return part
        finally:
            conn.close()
    raise AssertionError(f"no snapshot of {step} in {directory}")


@pytest.mark.parametrize("layer", ["bytewax", "forewarn"])  # (unversioned: still read)
def test_crafted_pickle_is_refused_and_never_runs(store: Store, tmp_path: Path,
                                                  layer: str) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(f"touch {marker}"), protocol=pickle.HIGHEST_PROTOCOL)
    # Bytewax unpickles the row; Forewarn unpickles the bytes its snapshot() returned
    blob = evil if layer == "bytewax" else pickle.dumps(evil)
    part = _plant(store.dir, "forewarn.sequence", blob)
    refusal = _assert_refused(_restart(store, tmp_path / "flow.log"), str(part),
                              "'forewarn.sequence'", "key 'clock-")  # (an input shard's)
    assert "posix.system" in refusal
    assert not marker.exists(), "the planted pickle ran"
    with pytest.raises(UnsafePickle):
        loads(evil)  # Forewarn's own loader refuses it too
    assert not marker.exists()


def test_a_record_of_the_wrong_shape_is_refused_before_the_run(store: Store,
                                                               tmp_path: Path) -> None:
    """A record with the stage's name and version whose fields are of the wrong kind:
    refused before the flow starts, naming the file, step and field (not a failure
    inside the running flow)."""
    blob = dump_record("site", state_records.FORMATS["site"].version,
                       {"site": {"site_id": "SITE0001", "members": [["SUB1", "C1"]]},
                        "outbox": []})
    part = _plant(store.dir, "forewarn.site", pickle.dumps(blob))
    _assert_refused(_restart(store, tmp_path / "flow.log"), str(part), "'forewarn.site'",
                    "site.members is a list, not a Members")


def test_care_key_is_not_shown_in_a_refusal(store: Store) -> None:
    """Care keys are buckets (``care-bNNNN``), named; in a store of earlier versions a
    care key is a subscriber id, which a refusal never shows: it names the row."""
    part = _plant(store.dir, "forewarn.care", pickle.dumps(_Payload("true")))
    with pytest.raises(RecoveryStoreError) as refused:
        check_store(store.dir)
    assert str(part) in str(refused.value) and "SUB" not in str(refused.value)
    assert "'care-b" in str(refused.value)
    conn = sqlite3.connect(part)
    try:  # (the planted row's key made a subscriber's id, as earlier versions keyed care)
        conn.execute("UPDATE snaps SET state_key = 'SUB0000042' WHERE rowid = (SELECT rowid "
                     "FROM snaps WHERE step_id = 'forewarn.care' AND ser_change = ?)",
                     (pickle.dumps(_Payload("true")),))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(RecoveryStoreError) as refused:
        check_store(store.dir)
    assert str(part) in str(refused.value) and "SUB" not in str(refused.value)
    assert "SELECT state_key FROM snaps WHERE rowid" in str(refused.value)


# ---- permissions -----------------------------------------------------------------------


@pytest.mark.parametrize("what", ["directory", "file"])
def test_group_writable_store_is_refused(store: Store, tmp_path: Path, what: str) -> None:
    target = store.dir if what == "directory" else store.dir / "part-1.sqlite3"
    target.chmod(target.stat().st_mode | 0o020)
    refusal = _assert_refused(_restart(store, tmp_path / "flow.log"), str(target), "group")
    assert f"chmod -R go-w {store.dir}" in refusal


def test_new_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    from forewarn.connectors.kafka_run import ensure_recovery_dir

    old = os.umask(0o002)
    try:
        new = ensure_recovery_dir(tmp_path / "new", 2)
    finally:
        os.umask(old)
    check_store(new)  # no refusal of what Forewarn itself created
    assert new.stat().st_mode & 0o077 == 0


# ---- the pickle check, opcode by opcode (no broker) -----------------------------------


def test_real_snapshots_pass_the_pickle_check(killed_store: Store) -> None:
    steps = set()
    for part in killed_store.dir.glob("part-*.sqlite3"):
        conn = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        for step, blob in conn.execute("SELECT step_id, ser_change FROM snaps "
                                       "WHERE ser_change IS NOT NULL"):
            record = check_pickle(blob)
            value = pickle.loads(blob)  # trusted here: written by this test's own run
            if step != "forewarn.input":  # a stage's state: a versioned record
                stage = step.rpartition(".")[2]
                assert record == (stage, state_records.FORMATS[stage].version), value[:30]
                state_records.load(stage, value)
            steps.add(step)
        conn.close()
    assert {"forewarn.sequence", "forewarn.site", "forewarn.care", "forewarn.dispatch",
            "forewarn.input"} <= steps
    cfg = FlowConfig(book=load_rulebook(), durable=True, shards=2)  # (the topics' 2)
    report = check_store(killed_store.dir, resume=partial(check_resume, cfg))
    assert report.snapshots_checked > 10


def _hostile() -> Iterator[tuple[str, bytes]]:
    yield "GLOBAL os.system", b"cos\nsystem\n(S'true'\ntR."
    yield "eval", pickle.dumps(_Reduce(eval, ("1",)))
    yield "subprocess", b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93]\x85R."
    # getattr(PropensityModel, '__init__') is not the allowed from_bytes
    yield "getattr", (b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93\x8c\x14dataflows.propensity"
                      b"\x8c\x0fPropensityModel\x93\x8c\x08__init__\x86R.")
    # a class's state set by BUILD (attribute injection into a global)
    yield "BUILD on a class", (b"\x80\x04\x8c\x0bcollections\x8c\x05deque\x93}"
                               b"\x8c\x03foo\x8c\x03bar\x73b.")
    # items set on a class (SETITEMS on a global), then its state (BUILD)
    yield "SETITEMS on a class", (b"\x80\x04\x8c\x0bcollections\x8c\x05deque\x93("
                                  b"\x8c\x01a\x8c\x01bu}b.")
    # REDUCE on something the pickle built rather than named
    yield "computed callable", b"\x80\x04\x8c\x0bcollections\x8c\x05deque\x93)R)R."
    yield "extension code", b"\x80\x04\x82\x01)R."
    yield "nested", pickle.dumps(pickle.dumps(_Reduce(os.system, ("true",))))
    yield "in a state snapshot", pickle.dumps(
        b"forewarn-state:\x01" + pickle.dumps(_Reduce(os.system, ("true",))))
    yield "unknown state format", pickle.dumps(b"forewarn-state:\x09" + pickle.dumps(1))
    yield "in a state record", pickle.dumps(
        b"forewarn-state:\x02care:\x02" + pickle.dumps(_Reduce(os.system, ("true",))))
    yield "unknown stage", pickle.dumps(b"forewarn-state:\x02nosuch:\x02" + pickle.dumps({}))
    yield "newer record version", pickle.dumps(b"forewarn-state:\x02care:\x7f"
                                               + pickle.dumps({}))
    yield "truncated", pickle.dumps({"a": 1})[:-1]


@dataclass
class _Reduce:
    func: object
    args: tuple

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize(("what", "blob"), list(_hostile()), ids=[w for w, _ in _hostile()])
def test_hostile_pickles_are_refused_without_running(what: str, blob: bytes) -> None:
    with pytest.raises(UnsafePickle):
        check_pickle(blob)


def test_the_propensity_model_pickle_passes_and_loads() -> None:
    from forewarn.dataflows.propensity import PropensityModel

    blob = pickle.dumps(PropensityModel(), protocol=pickle.HIGHEST_PROTOCOL)
    check_pickle(blob)
    assert isinstance(loads(blob), PropensityModel)


def test_crafted_propensity_model_file_is_refused_and_never_runs(tmp_path: Path,
                                                                  capsys) -> None:
    """``--propensity-model`` reads a pickle from a file: the same allowlist applies."""
    from forewarn.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "propensity.model"
    evil.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    events = tmp_path / "events.jsonl"
    events.write_bytes(expected().lines[0] + b"\n")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--input", str(events), "--out", str(tmp_path / "out"), "--metrics-port",
              "-1", "--propensity-model", str(evil)])
    assert exit_.value.code == 2
    assert f"--propensity-model {evil}: not a propensity model snapshot" in capsys.readouterr().err
    assert not marker.exists()


# ---- stopping ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_kafka_run_cleanly(kafka_broker, tmp_path: Path,  # noqa: F811
                                          sig: signal.Signals) -> None:
    config = {"bootstrap.servers": kafka_broker.bootstrap}
    topics = fresh_topics(config, partitions=2)
    publish_lines(config, expected().lines, topics=topics)
    log = tmp_path / "flow.log"
    recovery = tmp_path / "recovery"
    proc = start_flow(flow_cmd(kafka_broker.bootstrap, topics, "--recovery", str(recovery),
                               "--snapshot-interval", "1", "--log-level", "INFO"), log)
    try:
        wait_until(lambda: _frontier(recovery) >= 2, 90, "a snapshot", proc=proc, log=log)
        proc.send_signal(sig)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert code == 0, f"rc {code}:\n{tail(log)}"
    assert "panicked" not in text and "Traceback" not in text, tail(log)
    stopped = [orjson.loads(line) for line in text.splitlines() if '"kafka flow stopped"' in line]
    assert [s["signal"] for s in stopped] == [sig.name]
    check_store(recovery)  # what a stop leaves resumes


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
