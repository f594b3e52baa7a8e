"""consumer.properties of the KCL MultiLangDaemon, generated from the values the kcl-consumer layer passes."""
from __future__ import annotations

import importlib.util

import pytest

from handlers.tracking import kcl_properties

pytestmark = pytest.mark.unit

STAGE_ENV = {"KCL_STREAM_NAME": "letgo-events-dev", "KCL_APPLICATION_NAME": "letgo-kcl-consumer-dev",
             "AWS_REGION": "eu-west-1", "KCL_MAX_RECORDS": "500", "KCL_INITIAL_POSITION": "TRIM_HORIZON"}


def test_the_properties_name_the_stage_stream_table_region_and_batch(tmp_path):
    out = tmp_path / "consumer.properties"
    assert kcl_properties.main(["--out", str(out)], env=STAGE_ENV) == 0
    values = kcl_properties.parse(out.read_text())
    assert values["streamName"] == "letgo-events-dev"
    assert values["applicationName"] == "letgo-kcl-consumer-dev"  # = the lease table's name
    assert values["regionName"] == "eu-west-1"
    assert values["maxRecords"] == "500"
    assert values["initialPositionInStream"] == "TRIM_HORIZON"
    assert values["retrievalMode"] == "POLLING"
    assert values["AwsCredentialsProvider"] == "DefaultCredentialsProvider"
    assert values["executableName"] == "python -m handlers.tracking.kcl_consumer"


def test_the_executable_is_a_module_of_this_project_with_a_main():
    python, flag, module = kcl_properties.EXECUTABLE.split()
    assert (python, flag) == ("python", "-m")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin.endswith("handlers/tracking/kcl_consumer.py")
    assert "def main(" in open(spec.origin).read() and 'if __name__ == "__main__"' in open(spec.origin).read()


def test_defaults_trim_horizon_and_a_second_between_reads():
    values = kcl_properties.from_env({k: v for k, v in STAGE_ENV.items() if k != "KCL_INITIAL_POSITION"})
    assert values["initialPositionInStream"] == "TRIM_HORIZON" and values["idleTimeBetweenReadsInMillis"] == "1000"


@pytest.mark.parametrize("change, named", [
    ({"KCL_STREAM_NAME": ""}, "KCL_STREAM_NAME"),
    ({"KCL_APPLICATION_NAME": "a table with spaces"}, "KCL_APPLICATION_NAME"),
    ({"AWS_REGION": "${AWS::Region}"}, "AWS_REGION"),
    ({"KCL_MAX_RECORDS": "20000"}, "KCL_MAX_RECORDS"),
    ({"KCL_MAX_RECORDS": "five hundred"}, "KCL_MAX_RECORDS"),
    ({"KCL_INITIAL_POSITION": "AT_TIMESTAMP"}, "KCL_INITIAL_POSITION"),
    ({"KCL_IDLE_MILLIS": "50"}, "KCL_IDLE_MILLIS"),
])
def test_a_value_the_daemon_cannot_run_with_is_refused_by_name(tmp_path, capsys, change, named):
    out = tmp_path / "consumer.properties"
    assert kcl_properties.main(["--out", str(out)], env={**STAGE_ENV, **change}) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_batch_size_is_refused():
    with pytest.raises(kcl_properties.PropertiesError, match="KCL_MAX_RECORDS: is not set"):
        kcl_properties.from_env({k: v for k, v in STAGE_ENV.items() if k != "KCL_MAX_RECORDS"})
