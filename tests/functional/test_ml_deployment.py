"""The ML layers as rendered by the real humilis (no AWS): every candidate and every live-pointer write reaches the
validator, nobody can pin a version through configuration, and the serving fleet shares one change memory that
it is allowed to read and write — and nothing more.

(Every layer's lint, checkov and general wiring: tests/functional/test_deployment.py.)
"""
from __future__ import annotations

import pytest

from tests.deploy_kit import load, render

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return render("DEV", tmp_path_factory.mktemp("ml-rendered"))


def test_candidates_and_live_pointer_writes_both_reach_the_validator(dev):
    from deploy.humilis_run import placeholder

    resources = load(dev / "model-validator.json")["Resources"]
    bucket = placeholder("ModelsBucketArn", "DEV").split(":")[-1]
    rules = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    keys = {name: rule["EventPattern"]["detail"]["object"]["key"] for name, rule in rules.items()}
    assert sorted(map(str, keys.values())) == sorted(map(str, [[{"wildcard": "models/*/candidate.json"}],
                                                               [{"wildcard": "models/*/current.json"}]]))
    for name, rule in rules.items():
        assert rule["EventPattern"]["detail"]["bucket"] == {"name": [bucket]}
        assert rule["Targets"] == [{"Id": "validator", "Arn": {"Fn::GetAtt": ["ValidatorFunction", "Arn"]}}]
        [permission] = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"
                        and r["Properties"]["SourceArn"] == {"Fn::GetAtt": [name, "Arn"]}]
        assert permission["Properties"]["Principal"] == "events.amazonaws.com"


def test_the_fleet_shares_one_change_memory_and_nobody_pins_versions_by_configuration(dev):
    from deploy.humilis_run import placeholder

    validator = load(dev / "model-validator.json")["Resources"]
    serving = load(dev / "model-serving.json")["Resources"]
    table = validator["ChangeMemoryTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["KMSMasterKeyId"] == placeholder("DataKeyArn", "DEV")

    options = {o["OptionName"]: o["Value"] for o in serving["Environment"]["Properties"]["OptionSettings"]}
    assert options["CHANGE_MEMORY"] == f"dynamodb:{table['TableName']}"
    assert "ALLOW_VERSION_HEADER" not in options  # no switch opens X-Model-Version to callers

    policy = validator["ServingChangeMemoryPolicy"]["Properties"]
    assert policy["Roles"] == [placeholder("InstanceRoleArn", "DEV").split("/")[-1]]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert statement["Resource"] == {"Fn::GetAtt": ["ChangeMemoryTable", "Arn"]}
