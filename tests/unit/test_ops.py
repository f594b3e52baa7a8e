"""AWS operations (letgo/ops): a missing stack or output is named; an assumed role never leaks into os.environ."""
from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from letgo.ops.search_setup import SearchStage, assumed_session, default_replicas, domain_config, signed_client
from letgo.ops.stacks import StackError, StackNotFound, StackOutputMissing, stack_outputs

pytestmark = pytest.mark.unit


class FakeCloudFormation:
    """describe_stacks over a dict of stack name -> outputs; an unknown stack fails as CloudFormation's does."""

    class exceptions:  # noqa: N801 - boto3's attribute name
        ClientError = ClientError

    def __init__(self, stacks: dict[str, dict[str, str]]) -> None:
        self.stacks = stacks

    def describe_stacks(self, StackName: str) -> dict:  # noqa: N803 - boto3's parameter name
        if StackName not in self.stacks:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": f"Stack with id {StackName} does not "
                                                                                "exist"}}, "DescribeStacks")
        return {"Stacks": [{"StackName": StackName, "Outputs": [
            {"OutputKey": key, "OutputValue": value} for key, value in self.stacks[StackName].items()]}]}


STACKS = {
    "letgo-elasticsearch-DEV": {"DomainEndpoint": "vpc-letgo-dev.eu-west-1.es.amazonaws.com",
                                "AdminRoleArn": "arn:aws:iam::123456789012:role/search-admin"},
    "letgo-search-indexer-DEV": {"IndexerRoleArn": "arn:aws:iam::123456789012:role/indexer"},
    "letgo-search-api-DEV": {"InstanceRoleArn": "arn:aws:iam::123456789012:role/search-api"},
}


def test_stack_outputs_of_a_deployed_layer_by_key():
    outputs = stack_outputs(FakeCloudFormation(STACKS), "search-indexer", "dev")
    assert outputs["IndexerRoleArn"].endswith("role/indexer") and outputs.get("Nope") is None


def test_stack_outputs_missing_stack_names_the_stack_and_the_deploy():
    with pytest.raises(StackNotFound) as raised:
        stack_outputs(FakeCloudFormation(STACKS), "redshift", "dev")
    assert raised.value.stack == "letgo-redshift-DEV"
    assert "letgo-redshift-DEV" in str(raised.value) and "make deploy STAGE=DEV" in str(raised.value)


def test_stack_outputs_missing_output_names_the_stack_and_the_output():
    outputs = stack_outputs(FakeCloudFormation(STACKS), "search-api", "DEV")
    with pytest.raises(StackOutputMissing) as raised:
        outputs["InstanceProfileArn"]
    assert (raised.value.stack, raised.value.output) == ("letgo-search-api-DEV", "InstanceProfileArn")
    assert "InstanceRoleArn" in str(raised.value)  # what the stack does have
    assert isinstance(raised.value, StackError) and not isinstance(raised.value, KeyError)


def test_search_stage_from_stacks_a_missing_layer_is_a_stack_error():
    stage = SearchStage.from_stacks(FakeCloudFormation(STACKS), "DEV")
    assert stage.writer_role_arn.endswith("role/indexer") and stage.reader_role_arn.endswith("role/search-api")
    with pytest.raises(StackNotFound, match="letgo-search-api-PROD"):
        SearchStage.from_stacks(FakeCloudFormation({k.replace("DEV", "PROD"): v for k, v in STACKS.items()
                                                    if "search-api" not in k}), "PROD")


class FakeSts:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def assume_role(self, **kwargs: str) -> dict:
        self.calls.append(kwargs)
        return {"Credentials": {"AccessKeyId": "ASIAADMIN", "SecretAccessKey": "admin-secret",
                                "SessionToken": "admin-token"}}


def test_search_setup_signs_with_an_explicit_session_and_leaves_the_environment_alone():
    before = dict(os.environ)
    sts = FakeSts()
    admin = assumed_session(sts, "arn:aws:iam::123456789012:role/search-admin", region="eu-west-1")
    assert sts.calls == [{"RoleArn": "arn:aws:iam::123456789012:role/search-admin",
                          "RoleSessionName": "letgo-search-setup"}]
    credentials = admin.get_credentials().get_frozen_credentials()
    assert (credentials.access_key, credentials.token) == ("ASIAADMIN", "admin-token")
    config = domain_config("vpc-letgo-dev.eu-west-1.es.amazonaws.com", region="eu-west-1", replicas=1, env={})
    assert (config.url, config.aws_region, config.replicas) == (
        "https://vpc-letgo-dev.eu-west-1.es.amazonaws.com", "eu-west-1", 1)
    client = signed_client(config, admin)  # built, not connected
    auth = client.transport.kwargs["http_auth"]
    assert auth.refreshable_credentials.get_frozen_credentials().access_key == "ASIAADMIN"
    assert dict(os.environ) == before


@pytest.mark.parametrize(("stage", "asked", "replicas"), [("PROD", None, 1), ("prod", None, 1), ("DEV", None, 0),
                                                          ("DEV", 2, 2), ("PROD", 0, 0)])
def test_search_setup_replicas_one_on_prod_unless_asked(stage, asked, replicas):
    assert default_replicas(stage, asked) == replicas


def test_replay_redeploys_the_stage_with_overrides_in_a_copy_of_the_parameters(tmp_path):
    import yaml

    from letgo.ops.replay import HUMILIS_RUN, redeploy

    parameters = tmp_path / "parameters.yaml"
    parameters.write_text("_default: {shard_count: 1}\nDEV: {shard_count: 2}\n")
    commands = []

    def run(command, check):
        commands.append((command, check, yaml.safe_load(open(command[6]).read())))
    redeploy("dev", {"statistics_mapping": False}, parameters=parameters, run=run)
    [(command, check, changed)] = commands
    assert check and command[1:5] == [str(HUMILIS_RUN), "update", "--stage", "dev"] and command[5] == "--parameters"
    assert changed["DEV"] == {"shard_count": 2, "statistics_mapping": False}
    assert yaml.safe_load(parameters.read_text())["DEV"] == {"shard_count": 2}  # the committed file is untouched
    assert not os.path.exists(command[6])  # the copy is gone


PARAMETERS_TEXT = """# per-stage parameters
_default:
    statistics_replay_from: 0       # epoch seconds of the last replay
    shard_count: 2

DEV:
    shard_count: 1   # small
PROD:
    statistics_replay_from: 1764151200  # an older replay
    shard_count: 4
LOCAL:
  shard_count: 1
"""


@pytest.mark.parametrize(("stage", "expected"), [
    ("DEV", "DEV:\n    statistics_replay_from: 1795685400\n    shard_count: 1   # small\nPROD:"),
    ("prod", "PROD:\n    statistics_replay_from: 1795685400  # an older replay\n    shard_count: 4\n"),
    ("QA", "  shard_count: 1\nQA:\n    statistics_replay_from: 1795685400\n"),
    ("LOCAL", "LOCAL:\n  statistics_replay_from: 1795685400\n  shard_count: 1\n"),  # as yaml.safe_dump indents
])
def test_replay_writes_its_starting_point_under_the_stage_keeping_the_file_as_it_was(tmp_path, stage, expected):
    import yaml

    from letgo.ops.replay import set_stage_parameter

    path = tmp_path / "parameters.yaml"
    path.write_text(PARAMETERS_TEXT)
    set_stage_parameter(path, stage, "statistics_replay_from", 1795685400)
    text = path.read_text()
    assert expected in text and text.startswith("# per-stage parameters\n_default:\n    statistics_replay_from: 0 ")
    values = yaml.safe_load(text)
    assert values[stage.upper()]["statistics_replay_from"] == 1795685400
    assert values["_default"] == {"statistics_replay_from": 0, "shard_count": 2}
