"""Sub-commands that drive the flow: `demo`, `run` (files), `rules check`."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path

import orjson

from forewarn import metrics
from forewarn.backtest import compare, format_report, run_backtest
from forewarn.connectors.broker_cli import positive_int
from forewarn.connectors.files import LinesSource
from forewarn.connectors.kafka_run import add_run_arguments, run_kafka
from forewarn.dataflows.flow import RunResults
from forewarn.dataflows.propensity import PropensityModel
from forewarn.logs import get_logger, setup_logging
from forewarn.rules.reload import RulebookWatcher
from forewarn.rules.rulebook import Rulebook, RulebookError, load_rulebook, storm_day
from forewarn.runner import run_files, run_lines, run_to_dir
from forewarn.simulator import ScenarioConfig, simulate, write_scenario
from forewarn.summary import format_table, read_jsonl, summarize

log = get_logger("forewarn.cli")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate a network into the flow and measure quality")
    p.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sites", type=int, default=300)
    p.add_argument("--hours", type=float, default=6.0)
    p.add_argument("--subscribers-per-cell", type=int, default=40)
    p.add_argument("--storm", metavar="REGION", nargs="?", const="north", default=None,
                   choices=("north", "south", "east", "west", "central"),
                   help="a storm day, run with the storm-day settings (one message per "
                        "customer per regional event, its notices paced: docs/rules.md) "
                        "unless --rules is given: a regional power cut takes most of "
                        "REGION's sites "
                        "down within 15 min (default region north); the summary's storm "
                        "block shows the NOC's regional events, messages per impacted "
                        "subscriber and the time to notify everyone (docs/quality.md)")
    p.add_argument("--storm-start", metavar="RFC3339", default=None,
                   help="when the storm begins (default: 40%% into the scenario)")
    p.add_argument("--pace", type=float, default=0.0, metavar="SECONDS",
                   help="spread the replay over about SECONDS of wall time, so dashboards "
                        "watch it live (outputs are the same; default: as fast as it goes)")
    p.add_argument("--warm-up-day", action=argparse.BooleanOptionalAction, default=True,
                   help="first run another simulated day (seed+1000, half the sites) "
                        "through the flow to warm-start the propensity model, as "
                        "yesterday's model would in production (default: on)")
    _common(p)
    p.set_defaults(func=cmd_demo, log_level="WARNING")  # the table is the demo's output

    p = sub.add_parser("run", help="run the flow over JSONL files (or on Kafka: --bootstrap)")
    p.add_argument("--input", nargs="+", metavar="FILE", help="JSONL event files")
    p.add_argument("--out", help="output directory for actions/incidents/dead letters")
    p.add_argument("--truth", help="simulator ground truth, to measure quality")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="run on Kafka instead of files")
    p.add_argument("--recovery", metavar="DIR", help="Bytewax recovery directory (Kafka mode)")
    p.add_argument("--action-format", choices=("contract", "tmf681"), default="contract",
                   help="actions as the contract's records (default) or as TM Forum TMF681 "
                        "CommunicationMessages (docs/tmf681.md)")
    p.add_argument("--partitions", type=positive_int, default=1, metavar="P",
                   help="file mode: read the input as P shards (subscribers hashed to "
                        "shards), each decoded and ordered by its own sequencer on "
                        "whichever worker holds it (default 1; docs/event-time.md)")
    p.add_argument("--partitioner", choices=("crc32", "kafka"), default="crc32",
                   help="file mode with --partitions: how a subscriber (or a KPI's cell) "
                        "picks its shard: crc32 (default, fast) or kafka, the contract's "
                        "producer partitioner, so the shards are the partitions a Kafka run "
                        "with P partitions reads and the outputs are that run's")
    _common(p)
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("backtest", help="what a rulebook would have done on recorded events")
    p.add_argument("--rules", metavar="DIR", required=True, help="rulebook directory")
    p.add_argument("--events", nargs="+", metavar="FILE", required=True, help="JSONL events")
    p.add_argument("--compare", metavar="DIR", help="a second rulebook, side by side")
    p.add_argument("--truth", metavar="FILE", help="simulator ground truth (quality figures)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("rules", help="rulebook tools")
    rsub = p.add_subparsers(dest="rules_command", metavar="COMMAND")
    c = rsub.add_parser("check", help="validate a rulebook directory")
    c.add_argument("dir", help="directory holding rulebook.yaml")
    c.set_defaults(func=cmd_rules_check)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", metavar="DIR", help="rulebook directory (default: built-in)")
    p.add_argument("-w", "--workers", type=int, default=1, help="worker threads (default 1)")
    p.add_argument("--metrics-port", type=int, default=9464,
                   help="serve Prometheus /metrics here (0: any free port, -1: off); "
                        "one port per process")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address to serve /metrics on (0.0.0.0: all interfaces)")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                   help="after the input ends, keep serving /metrics for up to SECONDS "
                        "(SIGINT/SIGTERM end it) so Prometheus scrapes the final values")
    p.add_argument("--propensity-model", metavar="FILE",
                   help="warm-start the complaint-propensity model from the "
                        "propensity.model an earlier run wrote (a file Forewarn wrote: "
                        "it is a pickle)")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                            "error"], help="log level of the JSON logs on stderr (default INFO)")


def _book(args: argparse.Namespace):
    try:
        return load_rulebook(args.rules)
    except RulebookError as exc:
        print(f"forewarn: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _propensity(args: argparse.Namespace) -> bytes | None:
    """The ``--propensity-model`` snapshot, checked; exits 2 saying what is wrong."""
    if not args.propensity_model:
        return None
    path = Path(args.propensity_model)
    try:
        data = path.read_bytes()
        PropensityModel.from_bytes(data)
    except OSError as exc:
        print(f"forewarn: --propensity-model {path}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same
        print(f"forewarn: --propensity-model {path}: not a propensity model snapshot "
              f"({type(exc).__name__}); give the propensity.model a run wrote to its --out",
              file=sys.stderr)
        raise SystemExit(2) from None
    return data


def _save_model(out: Path, results: RunResults) -> None:
    """The run's propensity model, to warm-start a later run (``--propensity-model``)."""
    if results.model is not None:
        (out / "propensity.model").write_bytes(results.model)


def _serve_metrics(args: argparse.Namespace) -> None:
    if args.metrics_port < 0:
        return
    try:
        port = metrics.serve(args.metrics_port, addr=args.metrics_host)
    except OSError as exc:
        print(f"forewarn: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("metrics served", extra={"url": f"http://{args.metrics_host}:{port}/metrics",
                                      "port": port})


def _run_started(mode: str, events: int | None, book, args: argparse.Namespace) -> None:
    log.info("run started", extra={"mode": mode, "events": events, "workers": args.workers,
                                   "rulebook": book.name, "rulebook_version": book.version})


def _run_finished(mode: str, summary: dict, seconds: float) -> None:
    metrics.OBSERVER.settle(force=True)
    metrics.RUN_FINISHED.set(time.time())
    log.info("run finished", extra={
        "mode": mode, "seconds": round(seconds, 3), "events_in": summary.get("events_in"),
        "dead_letters": summary.get("dead_letters"), "incidents": summary.get("incidents"),
        "actions": summary.get("actions")})


def _linger(args: argparse.Namespace) -> None:
    """Keep /metrics up after the run until ``--linger`` passes or SIGINT/SIGTERM."""
    if args.linger <= 0 or args.metrics_port < 0:
        return
    done = threading.Event()
    old = {sig: signal.signal(sig, lambda *_: done.set())
           for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("lingering", extra={"seconds": args.linger})
    try:
        done.wait(args.linger)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class Progress:
    """Prints events/s while the flow runs (from the metrics counters)."""

    def __init__(self, total: int | None):
        self.total = total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Progress:
        if sys.stderr.isatty() or self.total:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        print(file=sys.stderr)

    @staticmethod
    def _counted() -> float:
        return sum(s.value for m in metrics.EVENTS.collect() for s in m.samples
                   if s.name.endswith("_total"))

    def _loop(self) -> None:
        start, before = time.monotonic(), self._counted()  # an earlier run in this process
        while not self._stop.wait(1.0):
            done = self._counted() - before
            rate = done / max(time.monotonic() - start, 1e-9)
            pct = f" {100 * done / self.total:5.1f}%" if self.total else ""
            print(f"\r  flow: {int(done):>9,} events{pct}  {rate:>9,.0f} ev/s",
                  end="", file=sys.stderr, flush=True)


PACE_POLL_S = 0.1


def _warm_up_day(args: argparse.Namespace, book: Rulebook, out: Path,
                 warm: bytes | None) -> bytes | None:
    """Run another simulated day (seed+1000, half the sites) through the flow, as
    `forewarn run --input` would, and return the propensity model it leaves, as
    yesterday's model would be in production. Its events must not count in this
    process's metrics: they are zeroed after it (:func:`forewarn.metrics.reset`), and
    its logs are held to errors."""
    day = ScenarioConfig(seed=args.seed + 1000, sites=max(1, args.sites // 2),
                         hours=args.hours, subscribers_per_cell=args.subscribers_per_cell)
    print(f"Warm-up day (seed {day.seed}, {day.sites} sites) for the propensity model ...",
          file=sys.stderr)
    write_scenario(simulate(day), out / "events.jsonl", out / "truth.jsonl")
    root = logging.getLogger("forewarn")
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        results = run_files([out / "events.jsonl"], out, book, workers=args.workers,
                            propensity=warm)
    finally:
        root.setLevel(level)
        metrics.reset()
    _save_model(out, results)
    return results.model


def cmd_demo(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    book = _book(args)
    if args.storm and args.rules is None:  # a storm day as an operator would run it
        book = storm_day(book)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warm = _propensity(args)
    if args.warm_up_day:
        warm = _warm_up_day(args, book, out / "warm-up", warm)
    _serve_metrics(args)  # after the warm-up day: /metrics shows the demo's run only
    t0 = time.monotonic()
    cfg = ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                         subscribers_per_cell=args.subscribers_per_cell,
                         storm_region=args.storm, storm_start=args.storm_start)
    print(f"Simulating {args.sites} sites, {args.hours:g} h of network time "
          f"(seed {args.seed}{f', a storm in the {args.storm}' if args.storm else ''}) ...",
          file=sys.stderr)
    try:
        sc = simulate(cfg)
    except ValueError as exc:  # a storm where the network has no such region
        print(f"demo: {exc}; choose another --storm region or more --sites", file=sys.stderr)
        return 2
    write_scenario(sc, out / "events.jsonl", out / "truth.jsonl")
    t1 = time.monotonic()
    print(f"  {len(sc.lines):,} events in {t1 - t0:.1f} s; running the flow "
          f"({args.workers} worker{'s' if args.workers > 1 else ''}) ...", file=sys.stderr)
    _run_started("demo", len(sc.lines), book, args)
    with Progress(len(sc.lines)):
        if args.pace > 0:
            polls = max(args.pace / PACE_POLL_S, 1.0)
            source = LinesSource(sc.lines, batch=max(1, math.ceil(len(sc.lines) / polls)),
                                 pause_s=PACE_POLL_S)
            results = run_to_dir(source, out, book, workers=args.workers, propensity=warm)
        else:
            results = run_lines(sc.lines, out, book, workers=args.workers, propensity=warm)
    t2 = time.monotonic()
    _save_model(out, results)
    summary = summarize(out, events_in=len(sc.lines), truth=sc.truth, flow_seconds=t2 - t1,
                        n_cells=sc.stats.get("cells"), anchors=results.anchors)
    summary["propensity"] = dict(results.report)
    _run_finished("demo", summary, t2 - t1)
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(format_table(summary))
    print(f"\nOutputs in {out}/ (actions.jsonl, incidents.jsonl, dead_letters.jsonl, "
          f"truth.jsonl, summary.json)")
    _linger(args)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    book = _book(args)
    warm = _propensity(args)
    if args.bootstrap:
        if args.partitions != 1 or args.partitioner != "crc32":
            print("forewarn run: --partitions and --partitioner are for file mode; on Kafka "
                  "the input shards are the input topics' partitions (one shard each: create "
                  "the topics with `forewarn topics create --partitions N`)", file=sys.stderr)
            return 2
        _serve_metrics(args)
        _run_started("kafka", None, book, args)
        return run_kafka(args, book, propensity=warm)
    if not args.input or not args.out:
        print("forewarn run: give --input FILE... and --out DIR (or --bootstrap HOST:PORT)",
              file=sys.stderr)
        return 2
    missing = [p for p in args.input if not Path(p).is_file()]
    if missing:
        print(f"forewarn run: input file(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    _serve_metrics(args)
    out = Path(args.out)
    t0 = time.monotonic()
    events_in = n_cells = 0
    for p in args.input:
        with Path(p).open("rb") as fh:
            for line in fh:
                if line.strip():
                    events_in += 1
                    n_cells += b'"type":"cell"' in line
    _run_started("files", events_in, book, args)
    watch = RulebookWatcher(args.rules, book=book) if args.rules else None
    with Progress(events_in):
        results = run_files(args.input, out, book, workers=args.workers, watch=watch,
                            propensity=warm, action_format=args.action_format,
                            partitions=args.partitions, partitioner=args.partitioner)
    _save_model(out, results)
    truth = read_jsonl(Path(args.truth)) if args.truth else None
    summary = summarize(out, events_in=events_in, truth=truth, n_cells=n_cells,
                        flow_seconds=time.monotonic() - t0, anchors=results.anchors)
    summary["propensity"] = dict(results.report)
    _run_finished("files", summary, time.monotonic() - t0)
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(format_table(summary))
    _linger(args)
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    try:
        book = load_rulebook(args.dir)
    except RulebookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); the rulebook was not accepted", file=sys.stderr)
        return 1
    print(f"{book.source}: rulebook {book.name!r} version {book.version} OK "
          f"({len(book.rules)} rules)")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    missing = [p for p in args.events if not Path(p).is_file()]
    if missing:
        print(f"forewarn backtest: event file(s) not found: {', '.join(missing)}",
              file=sys.stderr)
        return 2
    books = []
    for path in [args.rules] + ([args.compare] if args.compare else []):
        try:
            books.append(load_rulebook(path))
        except RulebookError as exc:
            print(f"forewarn backtest: {exc}", file=sys.stderr)
            return 2
    truth = read_jsonl(Path(args.truth)) if args.truth else None
    reports = [run_backtest(book, args.events, truth) for book in books]
    print(format_report(*reports))
    if args.json:
        doc = reports[0] if len(reports) == 1 else {
            "a": reports[0], "b": reports[1], "differences": compare(*reports)}
        Path(args.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0
