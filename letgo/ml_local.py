"""Machine learning on the local stage: train, publish, validate, serve — the very code AWS runs, every model.

* **Training**: the Batch job's own entry (:func:`handlers.ml.batch_job.train`) against moto, once per model
  definition in ``models/``. moto's Firehose cannot partition, so the processed events are first laid out as
  AWS's dynamic partitioning writes them (:func:`letgo.warehouse.local.partition_into_bucket`).
* **Validation**: on AWS the models bucket sends "Object Created" to EventBridge, which invokes the validator.
  moto runs neither, but its S3 → SNS → SQS notifications work: the models bucket announces every write of a
  ``candidate.json`` or ``current.json`` to one SNS topic, and **each serving process subscribes its own queue**
  (:class:`PointerEvents`) — two ``letgo ml serve`` never take each other's events — and turns each notification
  into the EventBridge event the validator's handler expects.
* **Serving**: the serving wrapper's Flask app with every model on a free port, its change memory in the stage's
  PostgreSQL (shared by every local serving process); the validator's signed requests go there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from handlers.core.aws import client
from letgo import REPO_ROOT

DEFINITIONS = REPO_ROOT / "models"
TOPIC = "letgo-model-pointers"
POINTERS = ("candidate.json", "current.json")


def pointer_event(bucket: str, key: str) -> dict[str, Any]:
    return {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}


@dataclass(frozen=True)
class PointerEvents:
    """This process's queue of the models bucket's pointer writes (fanned out through SNS), as EventBridge events."""

    queue_url: str
    subscription_arn: str

    @classmethod
    def subscribe(cls, bucket: str, name: str) -> "PointerEvents":
        """Announce the bucket's pointer writes on the topic (idempotent) and subscribe a queue of this process."""
        sqs, sns, s3 = client("sqs"), client("sns"), client("s3")
        topic = sns.create_topic(Name=f"{TOPIC}-{bucket}")["TopicArn"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
            {"TopicArn": topic, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}}} for suffix in POINTERS]})
        url = sqs.create_queue(QueueName=f"{name}-{os.getpid()}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        subscription = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                                     Attributes={"RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)
        return cls(url, subscription["SubscriptionArn"])

    def drain(self) -> Iterator[dict[str, Any]]:
        """Each S3 notification as the EventBridge event AWS would deliver (keys stay URL-encoded, as S3 sends)."""
        sqs = client("sqs")
        while messages := sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                body = json.loads(message["Body"])
                if "Records" not in body and isinstance(body.get("Message"), str):  # an SNS envelope
                    body = json.loads(body["Message"])
                for record in body.get("Records", []):
                    yield pointer_event(record["s3"]["bucket"]["name"], record["s3"]["object"]["key"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def close(self) -> None:
        """Unsubscribe and delete this process's queue."""
        client("sns").unsubscribe(SubscriptionArn=self.subscription_arn)
        client("sqs").delete_queue(QueueUrl=self.queue_url)


def init_alerts() -> None:
    """Sentry for the ML commands, as every deployed entry point has (the stage's local transport, read by
    ``letgo alerts``): a refused training run or a rollback is an issue, not only a log line."""
    from handlers.core.alerts import init_sentry

    init_sentry(os.environ.get("STAGE", "local"))


def definition_files(models: list[str] | None = None, directory: Path = DEFINITIONS) -> list[Path]:
    files = sorted(directory.glob("*.yaml"))
    return [path for path in files if models is None or path.stem in models]


def train(*, processed_bucket: str, partitioned_bucket: str, models_bucket: str, models: list[str] | None = None,
          directory: Path = DEFINITIONS, say: Callable[[str], None] = print) -> dict[str, tuple[int, Any]]:
    """Lay the processed events out by type and day, then run the Batch job's training entry for each model."""
    from handlers.ml.batch_job import JobConfig, train as batch_train
    from letgo.warehouse.local import partition_into_bucket

    events = partition_into_bucket(client("s3"), processed_bucket, partitioned_bucket)
    say(f"  {events:,} processed events laid out by type and day in s3://{partitioned_bucket}/events/")
    results = {}
    for path in definition_files(models, directory):
        say(f"  training {path.stem} …")
        config = JobConfig(definition=path, processed_bucket=partitioned_bucket, models_bucket=models_bucket,
                           models_prefix="models/", end_date=None, event_types=REPO_ROOT / "event_types",
                           stage="local")
        results[path.stem] = batch_train(config)
    return results


def _app(models_bucket: str, *, models: list[str] | None, directory: Path, change_memory: str,
         **config: Any) -> Any:
    from handlers.ml.definition import load_definitions_safely
    from handlers.ml.serving.app import create_app
    from handlers.ml.serving.config import ServingConfig
    from handlers.ml.store import ModelStore

    definitions, broken = load_definitions_safely(directory, only=set(models) if models else None)
    store = ModelStore(models_bucket)
    app = create_app(definitions, store, broken=broken,
                     config=ServingConfig(change_memory=change_memory, **config))
    return app, definitions, broken, store


def serve_and_validate(*, models_bucket: str, pointer_events: PointerEvents, directory: Path = DEFINITIONS,
                       change_memory: str = "local") -> dict[str, Any]:
    """Serve every model, deliver the pointer events to the validator (which makes the candidates live), then ask
    the API each model's golden inputs as a user would."""
    from handlers.ml.serving.client import HttpClient
    from handlers.ml.serving.validator import handle_event
    from letgo.services import BackgroundServer

    app, definitions, broken, store = _app(models_bucket, models=None, directory=directory,
                                           change_memory=change_memory, reload_seconds=0.5)
    out: dict[str, Any] = {name: {"validations": [], "predictions": []} for name in definitions}
    try:
        with BackgroundServer(app) as api:
            http = HttpClient(api.url)
            for event in pointer_events.drain():
                report = handle_event(event, definitions=definitions, store=store, client=http, broken=broken)
                if report.model in out and report.outcome.value not in ("skipped", "live_ok"):
                    out[report.model]["validations"].append({
                        "version": report.version, "outcome": report.outcome.value, "detail": report.detail,
                        "headline": report.headline(), "failures": report.failures()})
            app.extensions["ml_serving"].refresh()  # the promotions: do not wait for the poll in a demo
            for name, definition in definitions.items():
                for golden in definition.golden_requests:
                    answer = http.request("POST", golden.endpoint, dict(golden.input),
                                          headers={"X-User-Id": "demo-user"})
                    out[name]["predictions"].append({"endpoint": golden.endpoint, "input": dict(golden.input),
                                                     "status": answer.status, "output": answer.body})
            health = http.request("GET", "/health").body
    finally:
        app.extensions["ml_serving"].stop()
    for name in definitions:
        out[name].update(served=health["models"].get(name), current=store.current_version(name),
                         validated=store.validated_versions(name))
    return {"models": out, "disabled": dict(health.get("disabled") or {})}


def serve_forever(*, models_bucket: str, pointer_events: PointerEvents, models: list[str] | None = None,
                  directory: Path = DEFINITIONS, change_memory: str = "local") -> int:
    """The serving API in the foreground; every few seconds this process's pointer events go to the validator."""
    import time

    from handlers.ml.serving.client import HttpClient
    from handlers.ml.serving.validator import handle_event
    from letgo.services import BackgroundServer

    app, definitions, broken, store = _app(models_bucket, models=models, directory=directory,
                                           change_memory=change_memory)
    with BackgroundServer(app) as api:
        for name, definition in definitions.items():
            print(f"serving {name}: " + ", ".join(f"{e.method} {api.url}{e.path}" for e in definition.endpoints))
        for filename, error in broken.items():
            print(f"NOT serving {filename}: {error}")
        print(f"GET {api.url}/health, {api.url}/openapi.json; Ctrl-C stops")
        http = HttpClient(api.url)
        # candidates published before this process subscribed (e.g. by `letgo ml train`) are validated first
        pending = [pointer_event(models_bucket, store.candidate_key(name)) for name in definitions
                   if store.candidate(name) is not None]
        try:
            while True:
                for event in [*pending, *pointer_events.drain()]:
                    print("validator:", handle_event(event, definitions=definitions, store=store, client=http,
                                                     broken=broken).headline())
                pending = []
                time.sleep(2)
        except KeyboardInterrupt:
            return 0
        finally:
            app.extensions["ml_serving"].stop()
            pointer_events.close()
