"""``letgo ml train | serve``: the price model on the running local stage (:mod:`letgo.ml_local`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from letgo import REPO_ROOT


def register(sub: Any) -> None:
    ml = sub.add_parser("ml", help="the price model on the running local stage: train it, serve it")
    ml.add_argument("action", choices=["train", "serve"])
    ml.add_argument("--definition", default=str(REPO_ROOT / "models" / "price_suggestion.yaml"))
    ml.set_defaults(func=cmd_ml)


def cmd_ml(args: argparse.Namespace) -> int:
    """train: the Batch job's training on the running local stage; serve: the serving API + the validator."""
    from letgo.ml_local import PointerEvents, serve_forever, train
    from letgo.stage import StageNames
    from letgo.stage_control import stage_info

    stage_info()
    names = StageNames()
    definition = Path(args.definition)
    if args.action == "train":
        code, report = train(processed_bucket=names.processed_bucket, partitioned_bucket=names.partitioned_bucket,
                             models_bucket=names.models_bucket, definition=definition)
        print(report.summary() if report is not None else "training failed before a report (see the log)")
        return code
    events = PointerEvents.subscribe(names.models_bucket, "letgo-model-pointers-stage")
    return serve_forever(models_bucket=names.models_bucket, pointer_events=events, definition=definition)
