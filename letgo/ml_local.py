"""Machine learning on the local stage: train, publish, validate, serve — the very code AWS runs.

* **Training**: the Batch job's own entry (:func:`handlers.ml.batch_job.train`) against moto. moto's
  Firehose cannot partition, so the processed events are first laid out as AWS's dynamic partitioning
  writes them (:func:`letgo.warehouse.local.partition_into_bucket`).
* **Validation**: on AWS the models bucket sends "Object Created" to EventBridge, which invokes the
  validator. moto runs neither, but its S3 → SQS notifications work: the local stage subscribes a queue to
  the models bucket, and :class:`PointerEvents` turns each S3 notification into the EventBridge event the
  validator's handler expects — the validator cannot tell the difference.
* **Serving**: the serving wrapper's Flask app on a free port; the validator sends its golden requests there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from handlers.core.aws import client
from letgo import REPO_ROOT

DEFINITION = REPO_ROOT / "models" / "price_suggestion.yaml"
POINTER_SUFFIX = "current.json"


def pointer_event(bucket: str, key: str) -> dict[str, Any]:
    return {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key}}}


@dataclass(frozen=True)
class PointerEvents:
    """S3 notifications of the models bucket's pointers, from an SQS queue, as EventBridge events."""

    queue_url: str

    @classmethod
    def subscribe(cls, bucket: str, queue_name: str) -> "PointerEvents":
        sqs, s3 = client("sqs"), client("s3")
        url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": POINTER_SUFFIX}]}}}]})
        return cls(url)

    def drain(self) -> Iterator[dict[str, Any]]:
        """Each S3 notification as the EventBridge event AWS would deliver (keys stay URL-encoded, as S3 sends)."""
        sqs = client("sqs")
        while messages := sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in messages:
                for record in json.loads(message["Body"]).get("Records", []):
                    yield pointer_event(record["s3"]["bucket"]["name"], record["s3"]["object"]["key"])
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def train(*, processed_bucket: str, partitioned_bucket: str, models_bucket: str, definition: Path = DEFINITION,
          say: Callable[[str], None] = print) -> tuple[int, Any]:
    """Lay the processed events out by type and day, then run the Batch job's training entry."""
    from handlers.ml.batch_job import JobConfig, train as batch_train
    from letgo.warehouse.local import partition_into_bucket

    events = partition_into_bucket(client("s3"), processed_bucket, partitioned_bucket)
    say(f"  {events:,} processed events laid out by type and day in s3://{partitioned_bucket}/events/")
    config = JobConfig(definition=definition, processed_bucket=partitioned_bucket, models_bucket=models_bucket,
                       models_prefix="models/", end_date=None, event_types=REPO_ROOT / "event_types", stage="local")
    return batch_train(config)


def serve_and_validate(*, models_bucket: str, pointer_events: PointerEvents, definition: Path = DEFINITION,
                       examples: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """Serve the current model, deliver the pointer events to the validator, then ask the API the examples."""
    from handlers.ml.definition import load_definition
    from handlers.ml.serving.app import create_app
    from handlers.ml.serving.client import HttpClient
    from handlers.ml.serving.config import ServingConfig
    from handlers.ml.serving.validator import handle_event
    from handlers.ml.store import ModelStore
    from letgo.services import BackgroundServer

    model = load_definition(definition)
    store = ModelStore(models_bucket)
    app = create_app(model, store, config=ServingConfig(allow_version_header=True, background_reload=False,
                                                        reload_seconds=0))
    validations = []
    with BackgroundServer(app) as api:
        http = HttpClient(api.url)
        for event in pointer_events.drain():
            report = handle_event(event, definitions={model.name: model}, store=store, client=http)
            validations.append({"version": report.version, "outcome": report.outcome.value, "detail": report.detail,
                                "headline": report.headline(), "failures": report.failures()})
        endpoint = model.endpoints[0].path
        answers = []
        for example in examples or tuple(g.input for g in model.golden_requests):
            answer = http.request("POST", endpoint, example, headers={"X-User-Id": "demo-user"})
            answers.append({"input": example, "status": answer.status, "output": answer.body})
        health = http.request("GET", "/health").body
    return {"validations": validations, "served": health, "predictions": answers,
            "current": store.current_version(model.name), "validated": store.validated_versions(model.name)}


def serve_forever(*, models_bucket: str, pointer_events: PointerEvents, definition: Path = DEFINITION) -> int:
    """The serving API in the foreground; every few seconds the pointer events go to the validator."""
    import time

    from handlers.ml.definition import load_definition
    from handlers.ml.serving.app import create_app
    from handlers.ml.serving.client import HttpClient
    from handlers.ml.serving.config import ServingConfig
    from handlers.ml.serving.validator import handle_event
    from handlers.ml.store import ModelStore
    from letgo.services import BackgroundServer

    model = load_definition(definition)
    store = ModelStore(models_bucket)
    app = create_app(model, store, config=ServingConfig(allow_version_header=True, reload_seconds=5))
    with BackgroundServer(app) as api:
        print(f"serving {model.name}: POST {api.url}{model.endpoints[0].path}  (GET {api.url}/health); Ctrl-C stops")
        http = HttpClient(api.url)
        # a model published before this process subscribed (e.g. by `letgo ml train`) is validated first
        pending = [pointer_event(models_bucket, store.pointer_key(model.name))] if store.current(model.name) else []
        try:
            while True:
                for event in [*pending, *pointer_events.drain()]:
                    print("validator:", handle_event(event, definitions={model.name: model}, store=store,
                                                     client=http).headline())
                pending = []
                time.sleep(5)
        except KeyboardInterrupt:
            return 0
