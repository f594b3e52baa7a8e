"""A stage that protects its data (protect_data, PROD) on moto server: what `make destroy` leaves, and when.

The LOCAL stage is deployed with ``protect_data: true`` by the real humilis (deploy/humilis_run.py): the stateful
layers' stacks get CloudFormation termination protection (moto's launcher models it, letgo/services/
moto_launcher.py), a destroy without ``--confirm letgo-LOCAL`` refuses and deletes nothing, a plain DeleteStack
on a protected stack is refused by CloudFormation itself, and the confirmed destroy deletes every stack while
the retained bucket and stream stay in the account with their data (and the key is reported kept).
"""
from __future__ import annotations

import pytest

from tests.deploy_kit import DISABLED, LAYERS, client, humilis, moto_server, parameters_file, stacks

pytestmark = pytest.mark.e2e
STAGE = "LOCAL"
STATEFUL = {"letgo-storage-LOCAL", "letgo-kinesis-LOCAL"}  # of LOCAL's layers, those holding data


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as env:
        yield env


def test_protected_stage_keeps_its_data_and_destroys_only_when_confirmed(aws, tmp_path):
    parameters = parameters_file(tmp_path / "parameters.yaml", {STAGE: {"protect_data": True}})
    expected = {f"letgo-{layer}-{STAGE}" for layer in LAYERS if layer not in DISABLED[STAGE]}

    # WHEN the stage is deployed
    humilis("create", "--stage", STAGE, "--parameters", str(parameters), "--output", str(tmp_path / "out.yaml"),
            env=aws)
    deployed = stacks(aws)
    assert set(deployed) == expected
    # THEN exactly the stateful layers' stacks are protected
    assert {name for name, s in deployed.items() if s.get("EnableTerminationProtection")} == STATEFUL
    cloudformation = client("cloudformation", aws)
    with pytest.raises(cloudformation.exceptions.ClientError, match="TerminationProtection"):
        cloudformation.delete_stack(StackName="letgo-storage-LOCAL")
    s3, kinesis = client("s3", aws), client("kinesis", aws)
    raw = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("letgo-raw-events-")]
    assert len(raw) == 1
    s3.put_object(Bucket=raw[0], Key="raw/dt=2026-12-01/kept.jsonl.gz", Body=b"an archived batch")

    # WHEN a destroy is not confirmed (or confirmed for another stage), nothing is deleted
    for confirm in ([], ["--confirm", "letgo-PROD"]):
        refused = humilis("delete", "--stage", STAGE, "--parameters", str(parameters), *confirm, env=aws, check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "CONFIRM=letgo-LOCAL" in refused.stderr
        assert set(stacks(aws)) == expected

    # WHEN it is confirmed, every stack goes, and what the templates retain stays with its data
    done = humilis("delete", "--stage", STAGE, "--parameters", str(parameters), "--confirm", "letgo-LOCAL", env=aws)
    assert stacks(aws) == {}
    assert "kept in the account: letgo-storage-LOCAL: RawBucket (AWS::S3::Bucket, Retain)" in done.stdout
    assert s3.get_object(Bucket=raw[0], Key="raw/dt=2026-12-01/kept.jsonl.gz")["Body"].read() == b"an archived batch"
    assert [s for s in kinesis.list_streams()["StreamNames"] if s.startswith("letgo-events-")] == ["letgo-events-local"]
    # moto cannot describe a key CloudFormation created (it stores the policy as a dict): the key is checked in
    # what the destroy reports as kept, from the deployed template
    assert "kept in the account: letgo-storage-LOCAL: DataKey (AWS::KMS::Key, Retain)" in done.stdout
