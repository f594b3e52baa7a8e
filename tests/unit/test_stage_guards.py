"""deploy/stage_guards.py: the checks around humilis that keep a real stage's data (no AWS: stand-ins).

The same functions run against moto's CloudFormation in tests/e2e/test_stage_protection.py; here, the decisions:
who may destroy what, when termination protection is (not) touched, when a deploy stops for the OpenSearch role.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from deploy import stage_guards

pytestmark = pytest.mark.unit


@dataclass
class Layer:
    name: str
    termination_protection: bool = False
    yaml_params: dict = field(default_factory=dict)
    deleted: bool = False

    @property
    def cf_name(self) -> str:
        return f"letgo-{self.name}-PROD"

    def delete(self) -> None:
        self.deleted = True


class CloudFormation:
    class exceptions:  # noqa: N801 - boto3's attribute name
        ClientError = ClientError

    def __init__(self, protected: dict[str, bool], templates: dict[str, dict] | None = None) -> None:
        self.protected, self.templates, self.calls = protected, templates or {}, []

    def describe_stacks(self, StackName):  # noqa: N803 - boto3's parameter names
        if StackName not in self.protected:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "does not exist"}}, "DescribeStacks")
        return {"Stacks": [{"StackName": StackName, "EnableTerminationProtection": self.protected[StackName]}]}

    def update_termination_protection(self, StackName, EnableTerminationProtection):  # noqa: N803
        self.calls.append((StackName, EnableTerminationProtection))
        self.protected[StackName] = EnableTerminationProtection

    def get_template(self, StackName):  # noqa: N803
        return {"TemplateBody": self.templates.get(StackName, {"Resources": {}})}


def test_protection_follows_each_layer_and_is_not_touched_when_already_right():
    layers = [Layer("storage", True), Layer("kinesis", True), Layer("statistics"), Layer("redshift")]
    cloudformation = CloudFormation({"letgo-storage-PROD": True, "letgo-kinesis-PROD": False,
                                     "letgo-statistics-PROD": True})  # redshift: not deployed
    state = stage_guards.sync_termination_protection(cloudformation, layers, say=lambda _m: None)
    assert cloudformation.calls == [("letgo-kinesis-PROD", True), ("letgo-statistics-PROD", False)]
    assert state == {"letgo-storage-PROD": True, "letgo-kinesis-PROD": True, "letgo-statistics-PROD": False}


def test_destroy_of_a_protected_stage_refuses_without_its_confirmation_and_deletes_nothing():
    layers = [Layer("storage", True), Layer("kinesis", True), Layer("statistics")]
    cloudformation = CloudFormation({layer.cf_name: layer.termination_protection for layer in layers})
    for confirm in (None, "letgo-DEV", "yes"):
        with pytest.raises(stage_guards.DestroyRefused) as refused:
            stage_guards.destroy(cloudformation, layers, "letgo", "prod", confirm, say=lambda _m: None)
        assert "CONFIRM=letgo-PROD" in str(refused.value)
    assert "(storage, kinesis)" in str(refused.value)  # the protected layers, named
    assert not any(layer.deleted for layer in layers) and cloudformation.calls == []


def test_confirmed_destroy_lifts_protection_deletes_in_reverse_and_lists_what_stays():
    order: list[str] = []
    layers = [Layer("storage", True), Layer("kinesis", True), Layer("statistics")]
    for layer in layers:
        layer.delete = (lambda name: lambda: order.append(name))(layer.name)  # type: ignore[method-assign]
    templates = {"letgo-storage-PROD": {"Resources": {
        "RawBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
        "RawBucketPolicy": {"Type": "AWS::S3::BucketPolicy"}}}}
    cloudformation = CloudFormation({layer.cf_name: layer.termination_protection for layer in layers}, templates)
    said: list[str] = []
    kept = stage_guards.destroy(cloudformation, layers, "letgo", "PROD", "letgo-PROD", say=said.append)
    assert order == ["statistics", "kinesis", "storage"]
    assert cloudformation.calls == [("letgo-kinesis-PROD", False), ("letgo-storage-PROD", False)]
    assert kept == ["letgo-storage-PROD: RawBucket (AWS::S3::Bucket, Retain)"]


def test_an_unprotected_stage_is_destroyed_without_confirmation():
    layers = [Layer("storage"), Layer("kinesis")]
    assert [layer.name for layer in stage_guards.check_destroy(layers, "letgo", "DEV", None)] == ["kinesis", "storage"]


class Iam:
    class exceptions:  # noqa: N801
        class NoSuchEntityException(Exception):
            pass

    def __init__(self, roles: set[str]) -> None:
        self.roles = roles

    def get_role(self, RoleName):  # noqa: N803
        if RoleName not in self.roles:
            raise self.exceptions.NoSuchEntityException(RoleName)
        return {"Role": {"RoleName": RoleName}}


def test_a_search_domain_needs_the_opensearch_role_there_or_created_by_the_stage():
    search = Layer("elasticsearch", yaml_params={"create_service_linked_role": {"value": False}})
    with pytest.raises(stage_guards.PreflightFailed, match="create_opensearch_service_linked_role: true"):
        stage_guards.check_opensearch_role(Iam(set()), [Layer("storage"), search])
    stage_guards.check_opensearch_role(Iam({stage_guards.OPENSEARCH_SERVICE_LINKED_ROLE}), [search])
    creates = Layer("elasticsearch", yaml_params={"create_service_linked_role": {"value": True}})
    stage_guards.check_opensearch_role(Iam(set()), [creates])
    stage_guards.check_opensearch_role(Iam(set()), [Layer("storage")])  # no domain (LOCAL): nothing needed


def test_a_deploy_may_not_move_the_deployed_statistics_mapping():
    def statistics(mapping, replay_from):
        return Layer("statistics", yaml_params={"mapping": {"value": mapping}, "replay_from": {"value": replay_from}})

    class Deployed(CloudFormation):
        def __init__(self, position):
            super().__init__({"letgo-statistics-PROD": False})
            self.position = position

        def describe_stacks(self, StackName):  # noqa: N803
            stack = super().describe_stacks(StackName)
            stack["Stacks"][0]["Outputs"] = [{"OutputKey": "StartingPosition", "OutputValue": self.position}]
            return stack

    with pytest.raises(stage_guards.PreflightFailed, match="statistics_replay_from: 1764151200"):
        stage_guards.check_statistics_position(Deployed("AT_TIMESTAMP:1764151200"), [statistics(True, 0)])
    with pytest.raises(stage_guards.PreflightFailed, match="reads from LATEST"):
        stage_guards.check_statistics_position(Deployed("LATEST"), [statistics(True, 1764151200)])
    stage_guards.check_statistics_position(Deployed("AT_TIMESTAMP:1764151200"), [statistics(True, 1764151200)])
    stage_guards.check_statistics_position(Deployed("LATEST"), [statistics(False, 0)])  # a replay's removal
    stage_guards.check_statistics_position(CloudFormation({}), [statistics(True, 5)])  # not deployed yet
