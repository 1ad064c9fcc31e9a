"""What the rulebook limits cost: the largest rulebook they allow, and hostile ones refused.

Run: ``.venv/bin/python -m bench.rulebook_limits``. Writes to a temporary directory:
the largest rulebook under ``MAX_BYTES`` (the default plus copies of one escalation
rule), and hostile files (a billion laughs in a template, 5,000-deep nesting, a
python tag, a non-UTF-8 byte, an oversize file). Prints the load time of the largest
(best of 5: a hot reload parses it inside a stage's batch) and, for each hostile
file, the reason code, the wall time to refuse it and the peak of Python allocations
(tracemalloc) while refusing it.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

from forewarn.rules.rulebook import DEFAULT_DIR, RulebookError, load_rulebook
from forewarn.rules.safe_yaml import MAX_BYTES

DEFAULT = (DEFAULT_DIR / "rulebook.yaml").read_text(encoding="utf-8")


def largest() -> tuple[str, int]:
    """The default rulebook plus as many distinct escalation rules as fit in MAX_BYTES."""
    start = DEFAULT.index("  - id: long-outage-care-callback")
    block = DEFAULT[start:DEFAULT.index("  - id: dropped-call-apology")]
    text, n = DEFAULT, 0
    while True:
        rule = block.replace("long-outage-care-callback", f"callback-{n}").replace(
            "min_duration_s: 14400", f"min_duration_s: {3600 + n}")  # no overlap
        if len((text + rule).encode()) > MAX_BYTES:
            return text, n
        text, n = text + rule, n + 1


def hostile() -> dict[str, bytes]:
    laughs = ['      lol0: &l0 [' + ", ".join(['"lol"'] * 10) + "]"]
    laughs += [f"      lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]"
               for i in range(1, 10)]
    anchor = '      en: "Hi $name, sorry about your dropped calls'
    return {
        "billion laughs": DEFAULT.replace(anchor, "\n".join(laughs) + "\n      en: *l9\n"
                                          + anchor.replace("en:", "fr:")).encode(),
        "5,000-deep nesting": (DEFAULT + "d: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
        "python tag": DEFAULT.replace("rulebook: default",
                                      "rulebook: !!python/name:os.system").encode(),
        "non-UTF-8 byte": DEFAULT.replace("problème", "probl\xe8me").encode("latin-1",
                                                                           "replace"),
        "oversize (1 MiB)": (DEFAULT + "#" * 2**20).encode(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        text, extra = largest()
        (d / "rulebook.yaml").write_text(text, encoding="utf-8")
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            book = load_rulebook(d)
            best = min(best, time.perf_counter() - t0)
        print(f"largest allowed: {len(text.encode()):,} bytes, {len(book.rules)} rules, "
              f"loaded in {best * 1000:.0f} ms (best of 5)")
        for name, data in hostile().items():
            (d / "rulebook.yaml").write_bytes(data)
            tracemalloc.start()
            t0 = time.perf_counter()
            try:
                load_rulebook(d)
                code = "ACCEPTED"
            except RulebookError as exc:
                code = exc.code
            took = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{name:20} {code:15} {took * 1000:7.1f} ms  peak {peak / 2**10:6.0f} KiB")


if __name__ == "__main__":
    main()
