"""``consumer.properties`` of the KCL MultiLangDaemon, generated from the stage (the kcl-consumer layer's values).

The consumer image (``deploy/kcl-consumer/``) runs ``python -m handlers.tracking.kcl_properties --out FILE`` at
start: the kcl-consumer layer's user data hands the container the stage's values as environment variables, and
this module turns them into the daemon's properties, so that nothing in the image is stage-specific:

* ``KCL_STREAM_NAME`` -> ``streamName`` (the kinesis layer's stream);
* ``KCL_APPLICATION_NAME`` -> ``applicationName``: the name of the lease table the layer creates (KCL names its
  lease table after the application, and its KCL 3.x tables ``<name>-CoordinatorState`` and
  ``<name>-WorkerMetricStats``, which the layer creates and the instance role names too);
* ``AWS_REGION`` -> ``regionName``;
* ``KCL_MAX_RECORDS`` -> ``maxRecords``: the stage's ``batch_size``, as many records per ``processRecords`` as
  the Lambda consumer gets per invocation;
* ``KCL_INITIAL_POSITION`` -> ``initialPositionInStream`` (TRIM_HORIZON: a new lease starts at the oldest
  record still in the stream; the sinks are idempotent, so records the Lambda consumer already handled are
  written again harmlessly);
* ``KCL_IDLE_MILLIS`` -> ``idleTimeBetweenReadsInMillis`` (1000: the shard's five reads a second are shared
  with the statistics and search-indexer mappings).

``executableName`` is always ``python -m handlers.tracking.kcl_consumer`` (its :func:`main`), and the records
are polled (``retrievalMode = POLLING``: no enhanced fan-out consumer to register, as the Lambda mappings).
Standard library only, like the entry point that runs it.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Mapping

EXECUTABLE = "python -m handlers.tracking.kcl_consumer"
POSITIONS = ("TRIM_HORIZON", "LATEST")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")   # Kinesis stream and DynamoDB table names
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")


class PropertiesError(ValueError):
    """A value the daemon cannot run with; names the variable."""


def properties(*, stream_name: str, application_name: str, region: str, max_records: int,
               initial_position: str = "TRIM_HORIZON", idle_millis: int = 1000) -> dict[str, str]:
    """The daemon's properties, in the order they are written."""
    for variable, value, pattern in (("KCL_STREAM_NAME", stream_name, _NAME),
                                     ("KCL_APPLICATION_NAME", application_name, _NAME),
                                     ("AWS_REGION", region, _REGION)):
        if not pattern.fullmatch(value or ""):
            raise PropertiesError(f"{variable}: {value!r} is not a valid value")
    if not 1 <= max_records <= 10000:  # GetRecords returns at most 10,000 records
        raise PropertiesError(f"KCL_MAX_RECORDS: {max_records} is outside 1..10000")
    if initial_position not in POSITIONS:
        raise PropertiesError(f"KCL_INITIAL_POSITION: {initial_position!r} is not one of {', '.join(POSITIONS)}")
    if idle_millis < 200:  # KCL 3.x's minimum: below it the shard's 5 reads/s are throttled
        raise PropertiesError(f"KCL_IDLE_MILLIS: {idle_millis} is below 200")
    return {
        "executableName": EXECUTABLE,
        "streamName": stream_name,
        "applicationName": application_name,
        "regionName": region,
        "initialPositionInStream": initial_position,
        "retrievalMode": "POLLING",
        "maxRecords": str(max_records),
        "idleTimeBetweenReadsInMillis": str(idle_millis),
        "AwsCredentialsProvider": "DefaultCredentialsProvider",  # the instance profile, through IMDSv2
        "processingLanguage": "python/3.11",
        "callProcessRecordsEvenForEmptyRecordList": "false",
        "cleanupLeasesUponShardCompletion": "true",
        "validateSequenceNumberBeforeCheckpointing": "true",
    }


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    def integer(name: str, default: int | None = None) -> int:
        value = env.get(name) or (None if default is None else str(default))
        if value is None:
            raise PropertiesError(f"{name}: is not set")
        try:
            return int(value)
        except ValueError:
            raise PropertiesError(f"{name}: {value!r} is not a whole number") from None

    return properties(stream_name=env.get("KCL_STREAM_NAME", ""), application_name=env.get("KCL_APPLICATION_NAME", ""),
                      region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION", ""),
                      max_records=integer("KCL_MAX_RECORDS"),
                      initial_position=env.get("KCL_INITIAL_POSITION") or "TRIM_HORIZON",
                      idle_millis=integer("KCL_IDLE_MILLIS", 1000))


def render(values: Mapping[str, str]) -> str:
    """Java properties text (values are plain names and numbers: nothing to escape but the spaces we allow)."""
    return "".join(f"{key} = {value}\n" for key, value in values.items())


def parse(text: str) -> dict[str, str]:
    """The properties a file defines (comments and blank lines skipped), as the daemon reads them."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the KCL MultiLangDaemon's consumer.properties")
    parser.add_argument("--out", required=True, help="the properties file to write")
    args = parser.parse_args(argv)
    try:
        values = from_env(os.environ if env is None else env)
    except PropertiesError as error:
        print(f"consumer.properties not written: {error}", file=sys.stderr)
        return 2
    Path(args.out).write_text("# generated by handlers.tracking.kcl_properties from the stage\n" + render(values))
    return 0


if __name__ == "__main__":  # pragma: no cover - the image's entry point runs it
    raise SystemExit(main())
