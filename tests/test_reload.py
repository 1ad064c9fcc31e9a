"""The rulebook watcher (rules/reload.py) step by step: how often it looks, what counts as
a change, what it logs and counts when it applies or refuses one."""

from __future__ import annotations

import logging
import os

import pytest
from prometheus_client import REGISTRY

from forewarn.rules import reload
from forewarn.rules.reload import MAX_LOGGED_ERRORS, REFUSAL_CODES, RulebookWatcher
from forewarn.rules.rulebook import DEFAULT_DIR, ERROR_CODES, load_rulebook

DEFAULT_TEXT = (DEFAULT_DIR / "rulebook.yaml").read_text(encoding="utf-8")
V2 = DEFAULT_TEXT.replace("version: 1\n", "version: 2\n", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(reload.time, "monotonic", c)
    return c


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="forewarn.rules")
    return caplog


def sample(name: str, labels: dict | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def reloads(outcome: str, reason: str) -> float:
    return sample("forewarn_rulebook_reloads_total", {"outcome": outcome, "reason": reason})


def write(tmp_path, text: str) -> None:
    file = tmp_path / "rulebook.yaml"
    file.write_text(text, encoding="utf-8")
    # every write is a new version of the file, even within one mtime tick
    st = os.stat(file)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_every_refusal_code_is_a_metric_label_from_the_start():
    assert (*ERROR_CODES, "internal") == REFUSAL_CODES
    for code in REFUSAL_CODES:
        assert reloads("refused", code) is not None
    assert reloads("applied", "none") is not None


def test_the_file_is_looked_at_once_per_interval(tmp_path, clock):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=5.0)
    assert watcher.file == tmp_path / "rulebook.yaml"
    first = watcher.current()
    write(tmp_path, V2)
    clock.now += 4.9
    assert watcher.current() is first  # within the interval: not looked at
    clock.now += 0.1
    assert watcher.current().version == 2 and watcher.reloads == 1
    write(tmp_path, DEFAULT_TEXT)
    clock.now += 4.9  # the interval counts from the last look
    assert watcher.current().version == 2
    clock.now += 0.1
    assert watcher.current().version == 1 and watcher.reloads == 2


def test_a_file_gone_for_a_moment_keeps_the_running_rulebook(tmp_path, clock):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path / "rulebook.yaml", interval_s=0)
    running = watcher.current()
    (tmp_path / "rulebook.yaml").unlink()
    assert watcher.current() is running and watcher.refused == 0
    write(tmp_path, V2)
    assert watcher.current().version == 2


def test_an_applied_change_is_logged_counted_and_its_version_published(tmp_path, clock, logs):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    assert sample("forewarn_rulebook_version", {"rulebook": "default"}) == 1
    assert sample("forewarn_rulebook_file_refused") == 0
    applied = reloads("applied", "none")
    write(tmp_path, V2)
    book = watcher.current()
    assert book.version == 2 and watcher.current() is book  # parsed once per change
    assert reloads("applied", "none") == applied + 1
    assert sample("forewarn_rulebook_version", {"rulebook": "default"}) == 2
    (rec,) = [r for r in logs.records if r.name == "forewarn.rules"]
    assert rec.levelno == logging.INFO and rec.getMessage() == "rulebook reloaded"
    assert (rec.file, rec.rulebook, rec.version, rec.digest, rec.previous_version,
            rec.rules) == (str(tmp_path / "rulebook.yaml"), "default", 2, book.digest, 1,
                      len(book.rules))


def test_a_change_without_a_version_bump_is_applied_with_a_warning(tmp_path, clock, logs):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    write(tmp_path, DEFAULT_TEXT.replace("hold_down_s: 120", "hold_down_s: 180"))
    book = watcher.current()
    assert book.correlation.hold_down_s == 180 and watcher.reloads == 1
    warning, info = [r for r in logs.records if r.name == "forewarn.rules"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == "rulebook content changed without a version bump"
    assert (warning.file, warning.version) == (str(tmp_path / "rulebook.yaml"), 1)
    assert info.getMessage() == "rulebook reloaded"


def test_the_same_content_again_is_no_reload(tmp_path, clock, logs):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    running = watcher.current()
    write(tmp_path, DEFAULT_TEXT)  # touched, not changed
    assert watcher.current() is running and watcher.reloads == 0
    assert not [r for r in logs.records if r.name == "forewarn.rules"]


def test_a_refusal_is_logged_once_with_its_errors_cut_short(tmp_path, clock, logs):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    running = watcher.current()
    bad = DEFAULT_TEXT + "".join(f"k{i}{'x' * 400 if i == 0 else ''}: 1\n" for i in range(31))
    before = reloads("refused", "invalid")
    write(tmp_path, bad)
    for _ in range(3):
        assert watcher.current() is running
    assert watcher.refused == 1 and watcher.last_code == "invalid"
    assert len(watcher.last_errors) == 31
    assert reloads("refused", "invalid") == before + 1
    assert sample("forewarn_rulebook_file_refused") == 1
    (rec,) = [r for r in logs.records if r.name == "forewarn.rules"]
    assert rec.levelno == logging.ERROR
    assert rec.getMessage() == "rulebook change refused; keeping the running one"
    assert (rec.file, rec.reason, rec.error_count, rec.running_version, rec.running_digest) == (
        str(tmp_path / "rulebook.yaml"), "invalid", 31, 1, running.digest)
    assert len(rec.errors) == MAX_LOGGED_ERRORS == 20
    assert rec.errors == [e[:300] for e in watcher.last_errors[:20]]
    assert len(rec.errors[0]) == 300 < len(watcher.last_errors[0])
    # the file fixed: in force again, the refusal cleared
    write(tmp_path, V2)
    assert watcher.current().version == 2
    assert (watcher.last_errors, watcher.last_code) == ([], None)
    assert sample("forewarn_rulebook_file_refused") == 0


def test_an_unexpected_failure_is_refused_as_internal(tmp_path, clock, monkeypatch):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    running = watcher.current()

    def broken(path):
        raise KeyError("boom")

    monkeypatch.setattr(reload, "load_rulebook", broken)
    write(tmp_path, V2)
    assert watcher.current() is running
    assert (watcher.last_code, watcher.last_errors) == ("internal", [
        f"{tmp_path / 'rulebook.yaml'}:1: (file): could not be checked (KeyError); the "
        "running rulebook stays"])


def test_a_given_rulebook_is_used_until_the_file_changes(tmp_path, clock):
    write(tmp_path, V2)
    given = load_rulebook()
    watcher = RulebookWatcher(tmp_path, interval_s=0, book=given)
    assert watcher.current() is given and given.version == 1
    write(tmp_path, V2.replace("hold_down_s: 120", "hold_down_s: 90"))
    assert watcher.current().version == 2


def test_a_watcher_starts_from_its_own_file_and_looks_every_second(tmp_path, clock):
    write(tmp_path, V2.replace("rulebook: default", "rulebook: other").replace(
        "version: 2\n", "version: 7\n", 1))
    watcher = RulebookWatcher(tmp_path)
    assert (watcher.current().name, watcher.current().version) == ("other", 7)
    assert sample("forewarn_rulebook_version", {"rulebook": "other"}) == 7
    assert (watcher.last_errors, watcher.last_code, watcher.reloads, watcher.refused) == (
        [], None, 0, 0)
    write(tmp_path, V2)
    clock.now += 0.99
    assert watcher.current().name == "other"
    clock.now += 0.01
    assert watcher.current().name == "default"


def test_each_refused_change_is_counted(tmp_path, clock):
    write(tmp_path, DEFAULT_TEXT)
    watcher = RulebookWatcher(tmp_path, interval_s=0)
    for n, bad in enumerate(("rulebook: [\n", "version: x\n", "rulebook: [\n"), start=1):
        write(tmp_path, bad)
        watcher.current()
        assert watcher.refused == n
