"""``letgo recover --stage S``: re-deliver what a deployed stage's mappings gave up on.

The machinery is :mod:`letgo.recover`'s (read each on-failure message, re-read its records from Kinesis or the
raw archive, re-deliver, delete the message only once delivered). On a deployed stage the records are re-read
here and delivered by a synchronous invoke of the *deployed* function — which runs in its VPC with its own role
and configuration; the queues and function names come from the stacks' outputs.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import boto3
import orjson
from botocore.config import Config

from handlers.core.aws import client
from letgo.ops.stacks import stack_outputs
from letgo.recover import FUNCTIONS, RecordReader, Recovery, Say, batch_deliverer, window_recomputer
from letgo.windows import TumblingWindowMapping


class FunctionFailed(RuntimeError):
    """A deployed function answered a synchronous invoke with a function error (its records are not delivered)."""

    def __init__(self, function_name: str, kind: str, message: Any) -> None:
        self.function_name, self.kind, self.error_message = function_name, kind, message
        super().__init__(f"{function_name}: {kind} error: {message}")


def lambda_invoker(lambda_client: Any, function_name: str) -> Callable[[dict[str, Any]], Any]:
    """A synchronous invoke of the deployed function; a function error raises :class:`FunctionFailed`."""
    def invoke(event: dict[str, Any]) -> Any:
        response = lambda_client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                        Payload=orjson.dumps(event))
        payload = orjson.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise FunctionFailed(function_name, response["FunctionError"], message)
        return payload
    return invoke


def statistics_window_seconds() -> int:
    """The stream window of the deployed metrics (the packaged ``metrics/``, as the function has them)."""
    from handlers.core.config import PACKAGE_ROOT
    from handlers.schema.event_types import load_catalog
    from handlers.statistics.definitions import load_metrics

    return load_metrics(PACKAGE_ROOT / "metrics", load_catalog(PACKAGE_ROOT / "event_types")).stream_window_seconds


def stage_recoveries(cloudformation: Any, stage: str, functions: Iterable[str], *,
                     say: Say = print) -> list[tuple[str, Recovery]]:
    """One :class:`~letgo.recover.Recovery` per function, each invoking the deployed function."""
    kinesis_layer = stack_outputs(cloudformation, "kinesis", stage)
    storage = stack_outputs(cloudformation, "storage", stage)
    kinesis, stream, stream_arn = client("kinesis"), kinesis_layer["StreamName"], kinesis_layer["StreamArn"]
    region = kinesis.meta.region_name
    reader = RecordReader(kinesis, stream, client("s3"), storage["RawBucketName"])
    # a synchronous invoke lasts as long as the function (which may wait out an outage): not the short default
    lambda_client = boto3.session.Session().client("lambda", region_name=region, config=Config(
        read_timeout=900, connect_timeout=5, retries={"max_attempts": 1}))
    sqs = client("sqs")
    recoveries: list[tuple[str, Recovery]] = []
    for function in functions:
        if function == "consumer":
            invoke = lambda_invoker(lambda_client, kinesis_layer["ConsumerFunctionName"])
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=kinesis_layer["OnFailureQueueUrl"],
                                                  reader=reader, say=say, deliver=batch_deliverer(
                                                      invoke, stream_arn=stream_arn, region=region))))
        elif function == "statistics":
            layer = stack_outputs(cloudformation, "statistics", stage)
            invoke = lambda_invoker(lambda_client, layer["StatisticsFunctionName"])
            seconds = statistics_window_seconds()

            def new_mapping(invoke: Callable[[dict[str, Any]], Any] = invoke,
                            seconds: int = seconds) -> TumblingWindowMapping:
                return TumblingWindowMapping(kinesis, stream, invoke, window_seconds=seconds, maximum_retry_attempts=3,
                                             retry_delay=2.0, region=region, function_name="statistics", say=say)
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=layer["OnFailureQueueUrl"],
                                                  reader=reader, say=say, window_seconds=seconds,
                                                  recompute_window=window_recomputer(new_mapping))))
        elif function == "search-indexer":
            layer = stack_outputs(cloudformation, "search-indexer", stage)
            invoke = lambda_invoker(lambda_client, layer["IndexerFunctionName"])
            recoveries.append((function, Recovery(function, sqs=sqs, queue_url=layer["OnFailureQueueUrl"],
                                                  reader=reader, say=say, deliver=batch_deliverer(
                                                      invoke, stream_arn=stream_arn, region=region, batch_size=500))))
        else:
            raise ValueError(f"unknown function {function!r}; expected one of {FUNCTIONS}")
    return recoveries
