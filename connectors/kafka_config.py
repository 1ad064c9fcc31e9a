"""librdkafka client settings from the command line.

Every command that talks to Kafka takes the same three inputs:

* ``--bootstrap HOST:PORT[,HOST:PORT...]`` - the brokers;
* ``--config FILE`` - a client properties file: ``key=value`` lines, ``#`` or ``!``
  comments, like a Kafka client ``.properties`` file. Keys are librdkafka property
  names (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md),
  which match the Java client's for the common ones (``security.protocol``,
  ``sasl.mechanism``, ``sasl.username``...) but not all (librdkafka has
  ``ssl.ca.location`` where Java has ``ssl.truststore.location``);
* ``-X key=value`` (repeatable) - single settings, for SASL/TLS and tuning.

Later sources win: file, then ``--bootstrap``, then ``-X`` (as with kcat).

>>> build_config("127.0.0.1:9092", overrides=["client.id=forewarn", "acks = all"])
{'bootstrap.servers': '127.0.0.1:9092', 'client.id': 'forewarn', 'acks': 'all'}
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

__all__ = [
    "KafkaConfigError",
    "KafkaUnreachableError",
    "add_arguments",
    "build_config",
    "check_reachable",
    "config_from_args",
    "load_properties",
    "parse_overrides",
    "parse_properties",
]


class KafkaConfigError(ValueError):
    """A client setting could not be read; the message says where."""


class KafkaUnreachableError(ConnectionError):
    """No broker answered a metadata request; the message has librdkafka's last log line."""


def _split(line: str, where: str) -> tuple[str, str]:
    """Split one ``key=value`` item; ``where`` names its origin in errors."""
    key, sep, value = line.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise KafkaConfigError(f"{where}: expected key=value, got {line.strip()!r}")
    return key, value


def parse_properties(text: str, source: str = "<string>") -> dict[str, str]:
    """Parse ``key=value`` lines; blank lines and ``#``/``!`` comments are skipped.

    Whitespace around keys and values is dropped; a value may itself hold ``=``.
    Errors name ``source:line``.

    >>> parse_properties("# client\\nsecurity.protocol=SASL_SSL\\nsasl.password = a=b\\n")
    {'security.protocol': 'SASL_SSL', 'sasl.password': 'a=b'}
    >>> parse_properties("acks all", "client.conf")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    forewarn.connectors.kafka_config.KafkaConfigError: client.conf:1: expected key=value,
    got 'acks all'
    """
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        key, value = _split(stripped, f"{source}:{number}")
        settings[key] = value
    return settings


def load_properties(path: str | Path) -> dict[str, str]:
    """Read a client properties file (see :func:`parse_properties`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KafkaConfigError(f"cannot read Kafka client config {path}: {exc.strerror}") from exc
    return parse_properties(text, str(path))


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Parse ``-X key=value`` items.

    >>> parse_overrides(["sasl.mechanism=PLAIN", "linger.ms=5"])
    {'sasl.mechanism': 'PLAIN', 'linger.ms': '5'}
    >>> parse_overrides(["linger.ms"])  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    forewarn.connectors.kafka_config.KafkaConfigError: -X linger.ms: expected key=value,
    got 'linger.ms'
    """
    return dict(_split(item, f"-X {item}") for item in items)


def build_config(
    bootstrap: str | None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> dict[str, str]:
    """Merge file, ``--bootstrap`` and ``-X`` settings (later wins) into one dict.

    ``bootstrap.servers`` must come from one of them.

    >>> build_config(None)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    forewarn.connectors.kafka_config.KafkaConfigError: no Kafka brokers given:
    pass --bootstrap HOST:PORT ...
    """
    settings: dict[str, str] = {}
    if config_file is not None:
        settings.update(load_properties(config_file))
    if bootstrap:
        settings["bootstrap.servers"] = bootstrap
    settings.update(parse_overrides(overrides))
    if not settings.get("bootstrap.servers"):
        raise KafkaConfigError(
            "no Kafka brokers given: pass --bootstrap HOST:PORT "
            "(or bootstrap.servers in --config FILE / -X bootstrap.servers=...)"
        )
    return settings


def add_arguments(parser: argparse.ArgumentParser, *, bootstrap_required: bool = True) -> None:
    """Add ``--bootstrap``, ``--config`` and ``-X`` to a command's parser."""
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        required=bootstrap_required,
        help="Kafka bootstrap servers (comma-separated)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="client properties file: key=value lines (librdkafka names), # comments",
    )
    parser.add_argument(
        "-X",
        dest="kafka_settings",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The client settings for arguments added by :func:`add_arguments`."""
    return build_config(
        getattr(args, "bootstrap", None),
        getattr(args, "config", None),
        getattr(args, "kafka_settings", None) or (),
    )


class _Collect(logging.Handler):
    """Keeps librdkafka's log lines of one probe."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def check_reachable(config: Mapping[str, str], timeout: float = 10.0) -> ClusterMetadata:
    """Fail fast, with a readable reason, when the cluster of ``config`` does not answer.

    Makes one metadata request (any client settings, e.g. SASL/TLS, apply) and
    returns the cluster metadata. librdkafka's own log of the attempt is kept out
    of stderr; its last line goes into the :class:`KafkaUnreachableError` raised
    when no answer comes within ``timeout`` seconds.
    """
    handler = _Collect()
    logger = logging.getLogger(f"{__name__}.probe.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        settings: dict[str, Any] = {**config, "logger": logger}  # the stubs omit a logger
        try:
            admin = AdminClient(settings)
        except KafkaException as exc:  # a setting librdkafka refuses (name or value)
            raise KafkaConfigError(
                f"a Kafka client setting was refused: {exc.args[0].str()}: fix it in "
                "--config FILE or -X key=value (librdkafka's names: see its CONFIGURATION.md)"
            ) from exc
        try:
            return admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            admin.poll(0)  # hands the queued log lines to the logger
            last = f"; last client log: {handler.lines[-1]}" if handler.lines else ""
            raise KafkaUnreachableError(
                f"no Kafka broker answered at {config.get('bootstrap.servers')} within "
                f"{timeout:g} s ({exc.args[0].str()}): is a broker up there? check --bootstrap "
                f"(SASL/TLS settings go in --config FILE or -X key=value){last}"
            ) from exc
    finally:
        logger.removeHandler(handler)
        logging.Logger.manager.loggerDict.pop(logger.name, None)  # no per-call logger leak
