"""A consumer in its own process, for the kill case: the local mapping with a checkpoint file, drained until idle.

``python -m tests.chaos.consumer_process STREAM QUEUE_URL CHECKPOINT`` with the stage's environment
(endpoint, buckets, DATABASE_URL, SENTRY_LOCAL_PATH…). Killed with SIGKILL at any moment and started again,
it resumes after the last batch it finished — as Lambda's mapping resumes after a killed invocation.
"""
from __future__ import annotations

import sys
from pathlib import Path

from handlers.core.aws import client
from handlers.tracking import lambda_consumer
from letgo.driver import EventSourceMapping, sqs_on_failure


def main(stream: str, queue_url: str, checkpoint: str) -> int:
    lambda_consumer.logger.setLevel("WARNING")
    mapping = EventSourceMapping(client("kinesis"), stream, lambda_consumer.process_event, batch_size=50,
                                 on_failure=sqs_on_failure(client("sqs"), queue_url), region="eu-west-1",
                                 retry_delay=0.2, max_retry_delay=2.0, checkpoint_path=Path(checkpoint),
                                 say=lambda line: print(line, flush=True))
    mapping.start("TRIM_HORIZON")  # a shard with a checkpoint resumes after it
    handled = mapping.drain(idle_polls=2)
    print(f"consumer process: {handled} records handled", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
