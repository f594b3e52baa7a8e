"""``letgo ml train | serve | kill | revive | status | rollback``: the models on the running local stage
(:mod:`letgo.ml_local`), and the operator's controls of a served model, locally or on a deployed stage
(:mod:`handlers.ml.killswitch`, :class:`handlers.ml.store.ModelStore`)."""
from __future__ import annotations

import argparse
from typing import Any

import orjson

OPERATOR = ("kill", "revive", "status", "rollback")


def register(sub: Any) -> None:
    ml = sub.add_parser("ml", help="the models: train and serve them locally; switch one off/on, inspect it, roll "
                                   "it back (locally or on --stage)")
    verbs = ml.add_subparsers(dest="action", required=True)
    for verb, text in (("train", "train every model (or --model) on the stage's events; publish candidates"),
                       ("serve", "serve every model (or --model) and validate their candidates, in the foreground")):
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("--model", action="append", help="only this model (repeatable)")
    for verb, text in (("kill", "switch a model off for everyone (users get 503 model_disabled)"),
                       ("revive", "switch it back on (a candidate that waited is announced to the validator)"),
                       ("status", "the live version, the candidate, the validated ones and the kill switch"),
                       ("rollback", "reject the live version and go back to the one live before it")):
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("model")
        parser.add_argument("--reason", default="", help="why (kept in the store; shown by /health)")
        parser.add_argument("--stage", help="a deployed stage (DEV, PROD…) instead of the local stage")
    ml.set_defaults(func=cmd_ml)


def cmd_ml(args: argparse.Namespace) -> int:
    if args.action in OPERATOR:
        return cmd_operator(args)
    from letgo.ml_local import PointerEvents, init_alerts, serve_forever, train
    from letgo.stage import StageNames
    from letgo.stage_control import stage_info

    info = stage_info()
    init_alerts()
    names = StageNames()
    if args.action == "train":
        results = train(processed_bucket=names.processed_bucket, partitioned_bucket=names.partitioned_bucket,
                        models_bucket=names.models_bucket, models=args.model)
        for name, (_, report) in results.items():
            print(report.summary() if report is not None else f"{name}: training failed before a report (see the log)")
        return max((code for code, _ in results.values()), default=0)
    events = PointerEvents.subscribe(names.models_bucket, "letgo-model-pointers-serve")
    return serve_forever(models_bucket=names.models_bucket, pointer_events=events, models=args.model,
                         change_memory=info.get("env", {}).get("DATABASE_URL") or "local")


def _store(stage: str | None) -> Any:
    from handlers.core.alerts import init_sentry
    from handlers.ml.store import ModelStore

    if stage:
        from handlers.core.aws import client
        from letgo.ops.stacks import stack_outputs

        init_sentry(stage.lower())
        return ModelStore(stack_outputs(client("cloudformation"), "storage", stage)["ModelsBucketName"])
    from letgo.stage import StageNames
    from letgo.stage_control import stage_info

    stage_info()
    init_sentry("local")
    return ModelStore(StageNames().models_bucket)


def cmd_operator(args: argparse.Namespace) -> int:
    """kill / revive / status / rollback on the model store every serving process reads."""
    from handlers.ml import killswitch
    from handlers.ml.errors import StoreError

    store = _store(args.stage)
    model = args.model
    try:
        if args.action == "kill":
            shown: Any = killswitch.kill(store, model, reason=args.reason).to_dict()
        elif args.action == "revive":
            revived = killswitch.revive(store, model, reason=args.reason)
            shown = {**revived.switch.to_dict(), "announced_candidate": revived.announced}
        elif args.action == "rollback":
            shown = {"model": model, "live": store.rollback(model, reason=args.reason or "operator rollback")}
        else:
            shown = status(store, model)
    except StoreError as exc:
        print(f"error: {model}: {exc}")
        return 1
    print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
    return 0


def status(store: Any, model: str) -> dict[str, Any]:
    """Everything an operator asks first; each part says its own problem instead of failing the whole answer."""
    from handlers.ml import killswitch
    from handlers.ml.errors import StoreError

    def part(read: Any) -> Any:
        try:
            return read()
        except StoreError as exc:
            return {"error": str(exc)}

    def pointer(read: Any) -> Any:
        value = part(read)
        return value.to_dict() if hasattr(value, "to_dict") else value

    return {"model": model, "live": pointer(lambda: store.current(model)),
            "candidate": pointer(lambda: store.candidate(model)),
            "validated": part(lambda: store.validated_versions(model)),
            "rejected": part(lambda: store.rejected_versions(model)),
            "live_problem": part(lambda: store.live_problem(model)),
            "kill_switch": pointer(lambda: killswitch.status(store, model))}
