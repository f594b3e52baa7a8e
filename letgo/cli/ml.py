"""``letgo ml train | serve | kill-switch``: the price model on the running local stage (:mod:`letgo.ml_local`), and
the operator's kill switch of a served model, locally or on a deployed stage (:mod:`handlers.ml.killswitch`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson

from letgo import REPO_ROOT


def register(sub: Any) -> None:
    ml = sub.add_parser("ml", help="the price model: train and serve it locally; switch a served model off/on")
    ml.add_argument("action", choices=["train", "serve", "kill-switch"])
    ml.add_argument("state", nargs="?", choices=["on", "off", "status"],
                    help="kill-switch: on (users get 503 model_disabled), off (served again), status (default)")
    ml.add_argument("--definition", default=str(REPO_ROOT / "models" / "price_suggestion.yaml"))
    ml.add_argument("--reason", default="", help="kill-switch: why (kept in the switch, shown by /health)")
    ml.add_argument("--stage", help="kill-switch: a deployed stage (DEV, PROD…) instead of the local stage")
    ml.set_defaults(func=cmd_ml)


def cmd_ml(args: argparse.Namespace) -> int:
    """train: the Batch job's training on the running local stage; serve: the serving API + the validator."""
    if args.action == "kill-switch":
        return cmd_kill_switch(args)
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


def cmd_kill_switch(args: argparse.Namespace) -> int:
    """Switch the definition's model off or on in the model store every serving process reads, or show it."""
    from handlers.ml import killswitch
    from handlers.ml.definition import load_definition
    from handlers.ml.errors import StoreError
    from handlers.ml.store import ModelStore

    if args.stage:
        from handlers.core.aws import client
        from letgo.ops.stacks import stack_outputs

        bucket = stack_outputs(client("cloudformation"), "storage", args.stage)["ModelsBucketName"]
    else:
        from letgo.stage import StageNames
        from letgo.stage_control import stage_info

        stage_info()
        bucket = StageNames().models_bucket
    model = load_definition(Path(args.definition), resolve=False).name
    store = ModelStore(bucket)
    try:
        if args.state in ("on", "off"):
            state = killswitch.switch(store, model, args.state == "on", reason=args.reason)
        else:
            state = killswitch.status(store, model)
    except StoreError as exc:
        print(f"error: {model}: {exc}")
        return 1
    print(orjson.dumps(state.to_dict(), option=orjson.OPT_INDENT_2).decode())
    return 0
