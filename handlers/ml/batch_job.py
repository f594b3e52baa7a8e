"""AWS Batch entry point of the training job. Thin: configuration in, one training run, an exit code out.

    python -m handlers.ml.batch_job --definition models/price_suggestion.yaml \\
        --processed-bucket letgo-processed-prod --models-bucket letgo-models-prod

Configuration, most specific first: command-line arguments, then the environment (what the Batch job
definition sets), then defaults:

===================  ======================  ===========================================================
argument             environment             meaning
===================  ======================  ===========================================================
``--definition``     ``MODEL_DEFINITION``    the model's YAML file (required)
``--processed-bucket`` ``PROCESSED_BUCKET``  where Firehose writes the processed events (required)
``--models-bucket``  ``MODELS_BUCKET``       the model store's bucket (required)
``--models-prefix``  ``MODELS_PREFIX``       the model store's prefix (``models/``)
``--end-date``       ``END_DATE``            last day of the training window, YYYY-MM-DD (today, UTC)
``--event-types``    ``EVENT_TYPES_DIR``     event types to check column paths against (``event_types/``)
===================  ======================  ===========================================================

Also ``STAGE``, ``SENTRY_DSN_SECRET_ARN`` (AWS) or ``SENTRY_DSN`` (or ``SENTRY_LOCAL_PATH``), ``CODE_VERSION``
(set in the image at build) and
``AWS_ENDPOINT_URL`` (moto, the local stage). The report goes to stdout as one JSON line, last. Exit codes:
0 published; 2 not published — data blocked or a gate failed, Sentry has the report, the served model is
unchanged; 1 anything else (bad configuration, an unreadable bucket, a bug), also reported to Sentry.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Mapping, Sequence

import orjson
import sentry_sdk

from handlers.core.alerts import init_sentry
from handlers.core.aws import client
from handlers.core.config import PACKAGE_ROOT, ConfigError
from handlers.ml.definition import load_definition
from handlers.ml.errors import TrainingRejected
from handlers.ml.report import TrainingReport
from handlers.ml.store import ModelStore
from handlers.ml.training import run_training
from handlers.schema.errors import DefinitionError

EXIT_PUBLISHED, EXIT_ERROR, EXIT_NOT_PUBLISHED = 0, 1, 2
DEFAULT_EVENT_TYPES = PACKAGE_ROOT / "event_types"
log = logging.getLogger("handlers.ml.batch_job")


@dataclass(frozen=True)
class JobConfig:
    definition: Path
    processed_bucket: str
    models_bucket: str
    models_prefix: str
    end_date: date | None
    event_types: Path | None
    stage: str

    @classmethod
    def from_sources(cls, argv: Sequence[str], environ: Mapping[str, str]) -> "JobConfig":
        parser = argparse.ArgumentParser(prog="handlers.ml.batch_job", description="Train, judge and publish a model.")
        for flag in ("--definition", "--processed-bucket", "--models-bucket", "--models-prefix", "--end-date",
                     "--event-types"):
            parser.add_argument(flag)
        args = parser.parse_args(list(argv))

        def pick(arg: str | None, env: str, default: str | None = None) -> str | None:
            return arg or environ.get(env) or default

        values = {"MODEL_DEFINITION": pick(args.definition, "MODEL_DEFINITION"),
                  "PROCESSED_BUCKET": pick(args.processed_bucket, "PROCESSED_BUCKET"),
                  "MODELS_BUCKET": pick(args.models_bucket, "MODELS_BUCKET")}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigError(", ".join(missing), "not set (give the argument or the environment variable)")
        end = pick(args.end_date, "END_DATE")
        try:
            end_date = date.fromisoformat(end) if end else None
        except ValueError:
            raise ConfigError("END_DATE", f"{end!r} is not a YYYY-MM-DD date") from None
        event_types = pick(args.event_types, "EVENT_TYPES_DIR")
        if event_types is None and DEFAULT_EVENT_TYPES.is_dir():
            event_types = str(DEFAULT_EVENT_TYPES)
        return cls(definition=Path(values["MODEL_DEFINITION"]),  # type: ignore[arg-type]
                   processed_bucket=values["PROCESSED_BUCKET"],  # type: ignore[arg-type]
                   models_bucket=values["MODELS_BUCKET"],  # type: ignore[arg-type]
                   models_prefix=pick(args.models_prefix, "MODELS_PREFIX", "models/"),  # type: ignore[arg-type]
                   end_date=end_date, event_types=Path(event_types) if event_types else None,
                   stage=environ.get("STAGE", "local"))



def train(config: JobConfig) -> tuple[int, TrainingReport | None]:
    """One training run: (exit code, report). The report is None when there is nothing to report (bad
    definition, unreadable bucket, a bug) — those are logged and sent to Sentry here."""
    try:
        catalog = None
        if config.event_types is not None:
            from handlers.schema.event_types import load_catalog

            catalog = load_catalog(config.event_types)
        definition = load_definition(config.definition, catalog=catalog)
        s3 = client("s3")
        store = ModelStore(config.models_bucket, prefix=config.models_prefix, s3=s3)
        report = run_training(definition, events_s3=s3, processed_bucket=config.processed_bucket, store=store,
                              end=config.end_date)
        code = EXIT_PUBLISHED
    except TrainingRejected as rejected:  # already reported to Sentry by the job, with its fingerprint
        report, code = rejected.report, EXIT_NOT_PUBLISHED
    except DefinitionError as exc:
        log.error("%s", exc)
        sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(5)
        return EXIT_ERROR, None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, then fail the Batch job
        log.exception("training failed")
        sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(5)
        return EXIT_ERROR, None
    return code, report


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = JobConfig.from_sources(sys.argv[1:] if argv is None else argv, environ)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
    init_sentry(config.stage)  # on AWS the DSN comes from the secret SENTRY_DSN_SECRET_ARN names
    code, report = train(config)
    if report is None:
        return code
    sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    sys.stdout.flush()
    sentry_sdk.flush(5)
    return code


if __name__ == "__main__":  # pragma: no cover - the container's entry point
    sys.exit(main())
