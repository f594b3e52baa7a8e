"""``letgo search reindex | setup``: rebuild an index from the processed events; ready a deployed stage's domain."""
from __future__ import annotations

import argparse
from typing import Any

from letgo import REPO_ROOT


def register(sub: Any) -> None:
    search = sub.add_parser("search", help="search tooling: rebuild an index from the processed events")
    search.add_argument("action", choices=["reindex", "setup"])
    search.add_argument("--stage", help="setup: the deployed stage (run from inside its VPC: the domain is private)")
    search.add_argument("--replicas", type=int, help="setup: replica shards (default 1 on PROD, else 0)")
    search.add_argument("--bucket", help="the processed-events bucket (default: the running local stage's)")
    search.add_argument("--path", default=str(REPO_ROOT / ".local" / "search-reindex"),
                        help="tantivy: the index directory to (re)build (default .local/search-reindex)")
    search.add_argument("--opensearch-url", help="rebuild an OpenSearch cluster's indices instead (alias swap)")
    search.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    if args.action == "setup":
        return cmd_setup(args)
    return cmd_reindex(args)


def cmd_reindex(args: argparse.Namespace) -> int:
    """Rebuild an index from the processed events (the local stage's bucket by default)."""
    import os
    import shutil

    from handlers.core.aws import client
    from handlers.search import open_backend
    from letgo.progress import Progress
    from letgo.search_local import processed_listing_events, reindex
    from letgo.stage import StageNames
    from letgo.stage_control import stage_info

    if args.bucket is None:
        stage_info("(or pass --bucket)")  # the running local stage's moto endpoint
    bucket = args.bucket or StageNames().processed_bucket
    env = {"LETGO_SEARCH_BACKEND": "opensearch", "LETGO_OPENSEARCH_URL": args.opensearch_url} if args.opensearch_url \
        else {"LETGO_SEARCH_BACKEND": "tantivy", "LETGO_SEARCH_PATH": args.path}
    events = processed_listing_events(client("s3"), bucket)
    print(f"{len(events):,} listing events in s3://{bucket}/events/")
    if not args.opensearch_url:
        shutil.rmtree(args.path, ignore_errors=True)  # a rebuild: nothing of a previous index survives
    with open_backend({**os.environ, **env}) as backend:
        written = reindex(backend, events, progress=Progress("ads written"))
    print(f"reindexed {written:,} listings into {backend.name}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Templates, aliases and the security roles + mappings of a deployed stage's domain, as its admin role."""
    from handlers.core.aws import client
    from handlers.core.config import Env
    from letgo.ops import search_setup

    if not args.stage:
        raise SystemExit("search setup works on a deployed stage: pass --stage DEV (or PROD)")
    stage = search_setup.SearchStage.from_stacks(client("cloudformation"), args.stage)
    region = Env().optional("AWS_REGION", "eu-west-1")
    admin = search_setup.assumed_session(client("sts"), stage.admin_role_arn, region=region)
    config = search_setup.domain_config(stage.domain_endpoint, region=region,
                                        replicas=search_setup.default_replicas(args.stage, args.replicas))
    for line in search_setup.set_up(stage, config, admin):
        print(line)
    print(f"search domain of {args.stage.upper()}: templates, aliases and access are in place")
    return 0
