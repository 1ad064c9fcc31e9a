"""Hot reload: watch a rulebook file and swap it in when a valid change lands.

A change is picked up at most once per ``interval_s`` of wall time, at the
next batch a stage processes (each stage reads the rulebook once per batch,
so a batch never mixes two rulebooks). An invalid change is refused with its
errors logged, and the running rulebook stays.

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
>>> _ = (d / "rulebook.yaml").write_text("rulebook: broken\\n")
>>> w.current().version, len(w.last_errors) > 0
(2, True)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from forewarn import metrics
from forewarn.logs import get_logger
from rules.rulebook import DEFAULT_DIR, Rulebook, RulebookError, load_rulebook  # noqa: F401

log = get_logger("forewarn.rules")


class RulebookWatcher:
    """The active rulebook of a directory, reloaded when the file changes."""

    def __init__(self, path: str | Path, interval_s: float = 1.0,
                 book: Rulebook | None = None):
        path = Path(path)
        self.file = path / "rulebook.yaml" if path.is_dir() else path
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._book = book or load_rulebook(self.file)
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self.last_errors: list[str] = []
        self.reloads = 0
        metrics.RULEBOOK.labels(rulebook=self._book.name).set(self._book.version)

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.file)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def current(self) -> Rulebook:
        """The rulebook to use now (checks the file at most once per interval)."""
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return self._book
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                return self._book
            self._stamp = stamp
            try:
                book = load_rulebook(self.file)
            except RulebookError as exc:
                self.last_errors = exc.problems
                log.error("rulebook change refused; keeping the running one",
                          extra={"file": str(self.file), "errors": exc.problems,
                                 "running_version": self._book.version})
                return self._book
            if book.digest == self._book.digest:
                return self._book
            old, self._book = self._book, book
            self.last_errors = []
            self.reloads += 1
            if book.version == old.version:
                log.warning("rulebook content changed without a version bump",
                            extra={"file": str(self.file), "version": book.version})
            metrics.RULEBOOK.labels(rulebook=book.name).set(book.version)
            log.info("rulebook reloaded", extra={"file": str(self.file), "rulebook": book.name,
                                                 "version": book.version, "digest": book.digest,
                                                 "previous_version": old.version,
                                                 "rules": len(book.rules)})
            return book
