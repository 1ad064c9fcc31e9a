"""``forewarn simulate``: write simulator events (and the ground truth) as JSONL."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from forewarn.connectors.kafka_cli import add_pacing_arguments
from forewarn.simulator.config import ScenarioConfig, parse_time
from forewarn.simulator.scenario import simulate, write_scenario


def _rfc3339(text: str) -> str:
    """argparse type: an RFC 3339 timestamp with an offset."""
    try:
        parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time with offset: {text!r}") from exc
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` command."""
    defaults = ScenarioConfig()
    p = subparsers.add_parser(
        "simulate",
        help="write simulator events",
        description="Simulate a mobile network with outages, subscribers and complaints; "
        "write the input events and the ground truth as JSONL.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="FILE", help="events JSONL file to write")
    target.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="publish to the contract's Kafka topics instead")
    p.add_argument("--truth", type=Path, metavar="FILE",
                   help="ground-truth JSONL (default: truth.jsonl next to --out)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help=f"random seed (default {defaults.seed})")
    p.add_argument("--sites", type=int, default=defaults.sites,
                   help=f"number of sites (default {defaults.sites})")
    p.add_argument("--hours", type=float, default=defaults.hours,
                   help=f"scenario length in hours (default {defaults.hours:g})")
    p.add_argument("--subscribers-per-cell", type=float, default=defaults.subscribers_per_cell,
                   metavar="N",
                   help=f"mean subscribers per cell (default {defaults.subscribers_per_cell:g})")
    p.add_argument("--storm", metavar="REGION", choices=("north", "south", "east", "west",
                                                         "central"),
                   help="add a storm: a regional power cut taking most of REGION's sites down "
                        "within 15 min, restored over 1.5-5 h (simulator/README.md)")
    p.add_argument("--storm-start", type=_rfc3339, metavar="RFC3339",
                   help="when the storm begins (default: 40%% into the scenario)")
    p.add_argument("--start", type=_rfc3339, default=defaults.start, metavar="RFC3339",
                   help=f"scenario start (default {defaults.start})")
    k = p.add_argument_group("Kafka (with --bootstrap)")
    k.add_argument("--config", type=Path, metavar="FILE",
                   help="librdkafka client properties file (key=value lines)")
    k.add_argument("-X", dest="kafka_settings", metavar="KEY=VALUE", action="append",
                   default=[], help="one librdkafka setting (repeatable)")
    add_pacing_arguments(k)
    p.set_defaults(func=run)


def _summary(stats: dict, events: Path, truth: Path, seconds: float) -> str:
    """One line of counts for stderr."""
    outages = ", ".join(f"{k} {v}" for k, v in stats["outages"].items())
    complaints = stats["complaints"]
    return (
        f"simulate: {stats['lines']} lines ({stats['sites']} sites, {stats['cells']} cells, "
        f"{stats['subscribers']} subscribers, {stats['calls']} calls; outages: {outages}; "
        f"{stats['impacts_at_start']} impacted at start; complaints: "
        f"{complaints['outage']} outage, {complaints['drop_burst']} dropped-calls, "
        f"{complaints['background']} background; {stats['bad_lines_total']} bad lines) "
        f"-> {events}, truth -> {truth} in {seconds:.1f}s"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``forewarn simulate``; returns the exit code."""
    try:
        cfg = ScenarioConfig(seed=args.seed, sites=args.sites, hours=args.hours,
                             subscribers_per_cell=args.subscribers_per_cell, start=args.start,
                             storm_region=args.storm, storm_start=args.storm_start)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.bootstrap:
        return _publish(args, cfg)
    truth = args.truth or args.out.with_name("truth.jsonl")
    began = time.perf_counter()
    try:
        sc = simulate(cfg)
    except ValueError as exc:  # a storm where the network has no such region
        print(f"simulate: {exc}; choose another --storm region or more --sites",
              file=sys.stderr)
        return 2
    if cfg.storm_region is not None and not sc.stats["outages"]["storm"]:
        print("simulate: the storm hit no site inside the scenario (it starts too late, "
              "or every site of the region was down already): give an earlier "
              "--storm-start or more --hours", file=sys.stderr)
    write_scenario(sc, args.out, truth)
    print(_summary(sc.stats, args.out, truth, time.perf_counter() - began), file=sys.stderr)
    return 0


def _publish(args: argparse.Namespace, cfg: ScenarioConfig) -> int:
    """``--bootstrap``: publish the events to the contract topics (truth to ``--truth``)."""
    from forewarn.connectors.kafka_cli import report_text
    from forewarn.connectors.kafka_config import (
        KafkaConfigError,
        KafkaUnreachableError,
        check_reachable,
        config_from_args,
    )
    from forewarn.connectors.kafka_publish import Publisher, PublishError, Topics, publish_lines

    try:
        config = config_from_args(args)
        check_reachable(config)
        pub = Publisher(config, Topics(args.topic_prefix))
    except (KafkaConfigError, KafkaUnreachableError, PublishError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    sc = simulate(cfg)
    if args.truth:
        args.truth.parent.mkdir(parents=True, exist_ok=True)
        args.truth.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in sc.truth))
    print(f"simulate: {len(sc.lines)} lines simulated in {time.perf_counter() - began:.1f}s; "
          f"publishing to {config['bootstrap.servers']}"
          + (f" at {args.speed:g}x real time" if args.speed > 0 else "")
          + (f" at {args.rate:g}/s" if args.rate > 0 else ""), file=sys.stderr)
    try:
        report = publish_lines(config, sc.lines, topics=pub.topics, source="simulator",
                               speed=args.speed, rate=args.rate, publisher=pub)
    except PublishError as exc:
        print(f"simulate: {report_text(exc.report)}", file=sys.stderr)
        print(f"simulate: publishing failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    print(f"simulate: {report_text(report)}", file=sys.stderr)
    return 0
