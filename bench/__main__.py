"""``python -m bench``: run every benchmark, print a table of ratios, write reports/bench-<UTC>.json."""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from bench import consumer_bench, core_bench, pg_bench, search_bench, serving_bench, statistics_bench
from bench.timing import pin_to_one_core, progress, unpinned
from bench.workloads import lead_events, traffic_mix
from handlers.schema.event_types import load_catalog
from handlers.tracking.processor import Processor
from handlers.tracking.settings import load_settings
from letgo import REPO_ROOT


def _rate(x: float) -> str:
    return f"{x:,.0f}/s"


def _row(label: str, workload: str, candidate: dict[str, Any], baseline: dict[str, Any],
         ratio: dict[str, Any]) -> str:
    ok = "yes" if ratio["value"] >= ratio["goal"] else "NO"
    return (f"{label:<30} {workload:<12} {_rate(candidate['best_per_second']):>12} "
            f"{_rate(baseline['best_per_second']):>12} {ratio['value']:>7.2f} "
            f"{'>= ' + format(ratio['goal'], 'g'):>7}  {ok}")


def table(report: dict[str, Any]) -> str:
    head = f"{'benchmark':<30} {'workload':<12} {'candidate':>12} {'baseline':>12} {'ratio':>7} {'goal':>7}  ok"
    lines = [head, "-" * len(head)]
    for core in report["event_core"]:
        v = core["variants"]
        for label, base in (("core/floor", "floor"), ("core/jsonschema", "jsonschema")):
            lines.append(_row(f"event core vs {base}", core["workload"], v["core"], v[base], core["ratios"][label]))
    stats = report.get("statistics")
    if stats:
        v = stats["variants"]
        lines.append(_row("aggregation vs core floor", stats["workload"], v["aggregate"], v["floor"],
                          stats["ratios"]["aggregate/floor"]))
    pg = report.get("postgres")
    if pg:
        v = pg["variants"]
        lines.append(_row("PostgresSink vs raw COPY", pg["workload"], v["sink"], v["raw_copy"],
                          pg["ratios"]["sink/raw_copy"]))
    serving = report.get("serving")
    if serving:
        v = serving["variants"]
        lines.append(_row("model serving vs bare Flask", serving["workload"][:12], v["serving"], v["bare_flask"],
                          serving["ratios"]["serving/bare_flask"]))
        if "serving_shared" in v:
            lines.append(_row("  + shared change memory (PG)", serving["workload"][:12], v["serving_shared"],
                              v["bare_flask"], serving["ratios"]["serving_shared/bare_flask"]))
    consumer = report.get("consumer")
    if consumer:
        lines.append("")
        m = consumer["latency_model"]
        lines.append(f"consumer ({consumer['workload']}, one shard; S3 {m['s3_put_ms']:g} ms, Firehose "
                     f"{m['firehose_call_ms']:g} ms, PostgreSQL RTT {m['postgres_round_trip_ms']:g} ms, GetRecords "
                     f"{m['get_records_ms']:g} ms):")
        for r in consumer["results"]:
            ok = "yes" if r["ratio_to_shard_limit"] >= consumer["goal_ratio"] else "NO"
            lines.append(f"  batch {r['batch_size']:>5}: {r['records_per_second']:>7,} records/s = "
                         f"{r['ratio_to_shard_limit']:5.2f}x the shard write limit "
                         f"(goal >= {consumer['goal_ratio']:g}x: {ok}); "
                         f"batch p50 {r['batch_ms_p50']} ms, p99 {r['batch_ms_p99']} ms")
    lines.append("")
    lines.append("rates: best of the alternating rounds (events/s, rows/s for PostgreSQL, requests/s for serving); "
                 "ratio = candidate/baseline")
    if serving and "shared_memory_cost_us" in serving:
        lines.append(f"serving: the change memory shared in PostgreSQL costs {serving['shared_memory_cost_us']:.0f} us "
                     "per answer (one upsert)")
    search = report.get("search")
    if search:
        full, plain = search["query_full"], search["query_plain"]
        lines.append("")
        lines.append(f"search (tantivy, {search['workload']}): indexing {search['indexing']['ads_per_second']:,} ads/s "
                     f"({search['ratios']['indexing/json_floor']['value']:.3f}x of serialising them to JSON)")
        lines.append(f"  text+facets+geo   p50 {full['p50_ms']:6.2f} ms  p99 {full['p99_ms']:6.2f} ms   "
                     f"goal p99 <= {search['goal']['full_p99_ms']:g} ms: {'yes' if search['goal']['met'] else 'NO'}")
        lines.append(f"  plain text        p50 {plain['p50_ms']:6.2f} ms  p99 {plain['p99_ms']:6.2f} ms   "
                     f"(baseline; {search['mean_matches_full']:.0f} matches per full query on average)")
        api = search.get("api")
        if api:
            lines.append(f"  the API, text+facets+geo, {api['clients']} concurrent clients "
                         "(gunicorn workers x threads):")
            for name, layout in api["layouts"].items():
                lines.append(f"    {name}  {layout['requests_per_second']:7.1f} req/s   client p50 "
                             f"{layout['client']['p50_ms']:6.1f} ms  p99 {layout['client']['p99_ms']:6.1f} ms   "
                             f"server p50 {layout['server']['p50_ms']:6.2f} ms  "
                             f"p99 {layout['server']['p99_ms']:6.2f} ms" + ("   (shipped)" if name == "2x1" else ""))
    return "\n".join(lines)


BENCHMARKS = ("core", "statistics", "postgres", "search", "serving", "consumer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per round (core benchmark)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per round (PostgreSQL benchmark)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the best of each is kept")
    parser.add_argument("--mix-rounds", type=int, default=3,
                        help="rounds for the secondary traffic-mix workload (jsonschema makes it the slowest)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL benchmark")
    parser.add_argument("--ads", type=int, default=search_bench.ADS, help="ads in the search benchmark's index")
    parser.add_argument("--no-search", action="store_true", help="skip the search benchmark")
    parser.add_argument("--no-search-api", action="store_true",
                        help="search: skip the API under concurrent clients (in-process figures only)")
    parser.add_argument("--no-serving", action="store_true", help="skip the model serving benchmark")
    parser.add_argument("--consumer-records", type=int, default=10_000, help="records through the whole consumer")
    parser.add_argument("--only", choices=BENCHMARKS, action="append",
                        help="run only this benchmark (repeatable), e.g. --only postgres")
    args = parser.parse_args(argv)
    wanted = set(args.only or BENCHMARKS)
    wanted -= {name for name, skip in (("postgres", args.no_postgres), ("search", args.no_search),
                                       ("serving", args.no_serving)) if skip}

    started = time.perf_counter()
    all_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpu = pin_to_one_core()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    report: dict[str, Any] = {
        "started_at": now.isoformat().replace("+00:00", "Z"),
        "python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
        "pinned_cpu": cpu, "cpus_available": len(all_cpus) or os.cpu_count(),
        "method": "each round runs every variant once in a rotated order (gc.collect() before each); "
                  "figures are the best round; ratios compare candidate and baseline of this run only",
        "args": vars(args),
    }

    print(f"bench: {args.rounds} alternating rounds per benchmark, best kept; pinned to CPU {cpu}", flush=True)
    event_types_dir = REPO_ROOT / "event_types"
    processor = Processor(load_catalog(event_types_dir), load_settings())
    validators = core_bench.build_validators(processor, event_types_dir) if "core" in wanted else None

    report["event_core"] = []
    workloads: list[Any] = []
    if wanted & {"core", "statistics"}:
        progress("building workloads")
        workloads = [lead_events(args.events, now), traffic_mix(args.events, now)]
    if "core" in wanted:
        print("[1/5] event core vs base64+orjson floor vs base64+json+jsonschema pipeline", flush=True)
        for workload, rounds in zip(workloads, (args.rounds, args.mix_rounds)):
            progress(f"workload {workload.name}: {len(workload.records)} records, "
                     f"{workload.mean_bytes:.0f} bytes/event on average")
            report["event_core"].append(core_bench.run(workload, processor, validators, rounds))

    if "statistics" in wanted:
        print("[2/5] windowed aggregation (all shipped metrics) vs the same floor", flush=True)
        report["statistics"] = statistics_bench.run(workloads[1], processor, args.rounds)

    if "postgres" in wanted:
        print("[3/5] PostgresSink.write vs raw psycopg COPY (real PostgreSQL server)", flush=True)
        lead = workloads[0] if workloads and args.rows == args.events else lead_events(args.rows, now)
        events = []
        for i in range(0, len(lead.records), pg_bench.BATCH):
            events += processor.process(lead.records[i:i + pg_bench.BATCH]).events
        from letgo.postgres_migrations import migrate
        from letgo.services.postgres import PostgresServer

        base = REPO_ROOT / ".local" / "bench"
        base.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
        try:
            with ExitStack() as stack:
                progress(f"starting PostgreSQL in {workdir.relative_to(REPO_ROOT)}")
                with unpinned(all_cpus):  # the server is another machine in production: not on our core
                    server = stack.enter_context(PostgresServer(workdir))
                migrate(server.dsn)
                result = pg_bench.run(server.dsn, events, args.rounds)
                progress("stopping PostgreSQL")
            report["postgres"] = {"workload": lead.name, "mean_event_bytes": round(lead.mean_bytes, 1), **result}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    if "consumer" in wanted:
        print("[6/6] the whole consumer through the Lambda entry point, AWS-like latencies, one shard", flush=True)
        from letgo.postgres_migrations import migrate
        from letgo.services.postgres import PostgresServer

        mix = traffic_mix(args.consumer_records, now)
        base = REPO_ROOT / ".local" / "bench"
        base.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="pg-consumer-", dir=base))
        try:
            with unpinned(all_cpus), PostgresServer(workdir) as server:  # threads wait on I/O: every core
                migrate(server.dsn)
                report["consumer"] = consumer_bench.run(mix, processor, server.dsn)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    if "search" in wanted:
        print(f"[4/5] search: {args.ads:,} ads in the embedded engine, indexing rate and query latency, then the "
              "API under concurrent clients", flush=True)
        report["search"] = search_bench.run(args.ads, api_cpus=None if args.no_search_api else (all_cpus or {0}))

    if "serving" in wanted:
        print("[5/5] model serving wrapper (change memory in-process, and shared in PostgreSQL) vs a bare Flask JSON "
              "endpoint (in-process requests)", flush=True)
        report["serving"] = serving_bench.run(processor, args.rounds)

    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO_ROOT / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")

    print()
    print(table(report))
    print(f"elapsed {report['elapsed_seconds']} s; report written to {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
