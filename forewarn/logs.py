"""Structured JSON logs: one object per line on stderr.

Log incident ids, rule ids and counts — never subscriber ids, MSISDNs or
names. Fields go in ``extra={...}``.

>>> import io, logging
>>> buf = io.StringIO(); h = logging.StreamHandler(buf); h.setFormatter(JsonFormatter())
>>> lg = logging.getLogger("doctest.logs"); lg.addHandler(h); lg.propagate = False
>>> lg.warning("incident opened", extra={"incident_id": "INC-1"})
>>> sorted(orjson.loads(buf.getvalue()))
['incident_id', 'level', 'logger', 'msg', 'ts']
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger("forewarn")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("forewarn") else f"forewarn.{name}")
