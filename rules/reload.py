"""Hot reload: watch a rulebook file and swap it in when a valid change lands.

A change is picked up at most once per ``interval_s`` of wall time, at the
next batch a stage processes (each stage reads the rulebook once per batch,
so a batch never mixes two rulebooks). A change that is invalid for any reason
(unreadable, not UTF-8, too large or deep, an alias bomb, an unsafe tag, a bad
value, even a bug in the checker) is refused: the running rulebook stays, the
refusal is logged once with the file, a reason code and the ``file:line``
errors, and counted in ``forewarn_rulebook_reloads_total{outcome="refused",
reason}``; ``forewarn_rulebook_file_refused`` is 1 until the file holds a rulebook
that is in force again. Each change of the file is parsed once (a refused file is
not parsed again until it changes), and parsing is bounded (``forewarn.rules.safe_yaml``).

>>> import tempfile, shutil, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = shutil.copy(DEFAULT_DIR / "rulebook.yaml", d / "rulebook.yaml")
>>> w = RulebookWatcher(d, interval_s=0)
>>> w.current().version
1
>>> text = (d / "rulebook.yaml").read_text().replace("version: 1\\n", "version: 2\\n", 1)
>>> _ = (d / "rulebook.yaml").write_text(text)
>>> w.current().version
2
>>> _ = (d / "rulebook.yaml").write_bytes(b"rulebook: caf\\xe9\\n")
>>> w.current().version, w.last_code, w.refused, w.last_errors[0].split(": ", 1)[1][:20]
(2, 'not_utf8', 1, '(file): not UTF-8 te')
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from forewarn import metrics
from forewarn.logs import get_logger
from forewarn.rules.rulebook import (  # noqa: F401  (DEFAULT_DIR: doctest)
    DEFAULT_DIR,
    ERROR_CODES,
    Rulebook,
    RulebookError,
    load_rulebook,
)

log = get_logger("forewarn.rules")

#: Reason codes of a refused reload: the rulebook's own, and ``internal`` (any other
#: exception while loading: refused all the same, never raised into the flow).
REFUSAL_CODES = (*ERROR_CODES, "internal")
MAX_LOGGED_ERRORS = 20

for _code in REFUSAL_CODES:
    metrics.RULEBOOK_RELOADS.labels(outcome="refused", reason=_code)
metrics.RULEBOOK_RELOADS.labels(outcome="applied", reason="none")


class RulebookWatcher:
    """The active rulebook of a directory, reloaded when the file changes.

    ``reloads`` and ``refused`` count applied and refused changes; ``last_errors``
    and ``last_code`` describe the last refusal (empty and ``None`` once a change
    applies).
    """

    def __init__(self, path: str | Path, interval_s: float = 1.0,
                 book: Rulebook | None = None):
        path = Path(path)
        self.file = path / "rulebook.yaml" if path.is_dir() else path
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stamp = self._stat()  # before reading: a change while loading is seen next
        self._book = book or load_rulebook(self.file)
        self._checked = time.monotonic()
        self.last_errors: list[str] = []
        self.last_code: str | None = None
        self.reloads = 0
        self.refused = 0
        metrics.RULEBOOK.labels(rulebook=self._book.name).set(self._book.version)
        metrics.RULEBOOK_REFUSED.set(0)

    def _stat(self) -> tuple[int, int, int] | None:
        """What identifies one version of the file: mtime (ns), size, inode (an atomic
        rename changes the inode even within one mtime tick)."""
        try:
            st = os.stat(self.file)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Rulebook:
        """The rulebook to use now (checks the file at most once per interval)."""
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return self._book
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                return self._book  # unchanged, or gone for a moment (an editor's rename)
            self._stamp = stamp
            try:
                book = load_rulebook(self.file)
            except RulebookError as exc:
                self._refuse(exc.code, exc.problems)
                return self._book
            except Exception as exc:  # noqa: BLE001 - no rulebook change may stop the flow
                self._refuse("internal", [f"{self.file}:1: (file): could not be checked "
                                          f"({type(exc).__name__}); the running rulebook stays"])
                return self._book
            metrics.RULEBOOK_REFUSED.set(0)
            self.last_errors, self.last_code = [], None
            if book.digest == self._book.digest:
                return self._book  # back to the rulebook in force (e.g. a bad edit undone)
            old, self._book = self._book, book
            self.reloads += 1
            if book.version == old.version:
                log.warning("rulebook content changed without a version bump",
                            extra={"file": str(self.file), "version": book.version})
            metrics.RULEBOOK.labels(rulebook=book.name).set(book.version)
            metrics.RULEBOOK_RELOADS.labels(outcome="applied", reason="none").inc()
            log.info("rulebook reloaded", extra={"file": str(self.file), "rulebook": book.name,
                                                 "version": book.version, "digest": book.digest,
                                                 "previous_version": old.version,
                                                 "rules": len(book.rules)})
            return book

    def _refuse(self, code: str, problems: list[str]) -> None:
        """Log and count a refused change (errors name the file, lines and keys, and show
        rulebook values cut short; a rulebook holds no subscriber data)."""
        self.refused += 1
        self.last_errors, self.last_code = problems, code
        metrics.RULEBOOK_RELOADS.labels(outcome="refused", reason=code).inc()
        metrics.RULEBOOK_REFUSED.set(1)
        log.error("rulebook change refused; keeping the running one",
                  extra={"file": str(self.file), "reason": code,
                         "errors": [p[:300] for p in problems[:MAX_LOGGED_ERRORS]],
                         "error_count": len(problems), "running_version": self._book.version,
                         "running_digest": self._book.digest})
