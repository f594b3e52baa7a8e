"""deploy/stage_guards.check_single_consumer: consumer: lambda | kcl, never both (no AWS: stand-ins).

The same check runs with the real humilis on moto in tests/functional/test_kcl_layer.py (a switch back to lambda
refused while the fleet's stack exists, done once it is deleted); here, which deploys it lets through.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from deploy import stage_guards
from tests.unit.test_stage_guards import CloudFormation

pytestmark = pytest.mark.unit


@dataclass
class Layer:
    name: str
    yaml_params: dict = field(default_factory=dict)
    env_name: str = "letgo"
    env_stage: str = "PROD"


def kinesis(mapping: bool) -> Layer:
    return Layer("kinesis", {"consumer_mapping": {"value": mapping}})


FLEET_RUNNING = {"letgo-kcl-consumer-PROD": True}


def test_the_mapping_is_not_given_back_while_the_fleet_runs():
    with pytest.raises(stage_guards.PreflightFailed, match="letgo-kcl-consumer-PROD .*never runs both"):
        stage_guards.check_single_consumer(CloudFormation(dict(FLEET_RUNNING)), [Layer("storage"), kinesis(True)])


@pytest.mark.parametrize("cloudformation, layers", [
    (CloudFormation({}), [kinesis(True)]),                                       # lambda, no fleet deployed
    (CloudFormation(dict(FLEET_RUNNING)), [kinesis(False), Layer("kcl-consumer")]),  # kcl: the fleet is the stage's
    (CloudFormation(dict(FLEET_RUNNING)), [kinesis(False)]),                     # no mapping asked for
    (CloudFormation(dict(FLEET_RUNNING)), [Layer("storage")]),                   # no kinesis layer in this deploy
])
def test_deploys_with_one_consumer_go_through(cloudformation, layers):
    stage_guards.check_single_consumer(cloudformation, layers)
