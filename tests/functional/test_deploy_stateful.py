"""A real stage's data outlives the stack (item 2 of issue 12), on the rendered DEV and PROD templates.

PROD (``protect_data``) keeps buckets, keys, the stream, the search domain and the ECR repository when a stack
is deleted or a change would replace them (DeletionPolicy and UpdateReplacePolicy Retain); Aurora and Redshift
are snapshotted in every stage; the stateful layers' stacks get termination protection (what ``make deploy``
sets, from the render's stack summary); a new OpenSearch engine version upgrades the domain in place; the
account's OpenSearch service-linked role is created only when the stage says so. DEV keeps nothing.
"""
from __future__ import annotations

import json

import pytest

from tests.deploy_kit import load, render

pytestmark = pytest.mark.functional

# (layer, logical id or type) that PROD keeps, and how
KEPT = {("storage", "DataKey"): "Retain", ("storage", "AWS::S3::Bucket"): "Retain",
        ("kinesis", "EventStream"): "Retain", ("elasticsearch", "Domain"): "Retain",
        ("batch", "Repository"): "Retain", ("aurora", "Cluster"): "Snapshot", ("redshift", "Cluster"): "Snapshot"}
STATEFUL = {"storage", "kinesis", "aurora", "elasticsearch", "batch", "redshift"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("stateful")
    return {stage: render(stage, out) for stage in ("DEV", "PROD")}


def kept(folder, layer, selector):
    resources = load(folder / f"{layer}.json")["Resources"]
    chosen = [r for name, r in resources.items() if selector in (name, r["Type"])]
    assert chosen, (layer, selector)
    return {(r.get("DeletionPolicy", "Delete"), r.get("UpdateReplacePolicy", "Delete")) for r in chosen}


@pytest.mark.parametrize(("layer", "selector"), sorted(KEPT))
def test_prod_keeps_its_data_and_dev_does_not(rendered, layer, selector):
    policy = KEPT[(layer, selector)]
    assert kept(rendered["PROD"], layer, selector) == {(policy, policy)}
    dev = "Snapshot" if policy == "Snapshot" else "Delete"  # a database is snapshotted everywhere
    assert kept(rendered["DEV"], layer, selector) == {(dev, dev)}


def test_only_buckets_and_keys_are_kept_in_storage_not_their_policies_or_alias(rendered):
    resources = load(rendered["PROD"] / "storage.json")["Resources"]
    retained = {name for name, r in resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == {"DataKey"} | {name for name, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert len(retained) == 7  # the key, five data buckets and the access-log bucket


@pytest.mark.parametrize("stage", ["DEV", "PROD"])
def test_the_stateful_layers_stacks_are_termination_protected_in_prod_only(rendered, stage):
    stacks = json.loads((rendered[stage].parent / f"{stage}-stacks.json").read_text())
    protected = {layer for layer, stack in stacks.items() if stack["termination_protection"]}
    assert protected == (STATEFUL if stage == "PROD" else set())


@pytest.mark.parametrize("stage", ["DEV", "PROD"])
def test_the_search_domain_upgrades_its_engine_in_place(rendered, stage):
    domain = load(rendered[stage] / "elasticsearch.json")["Resources"]["Domain"]
    assert domain["UpdatePolicy"] == {"EnableVersionUpgrade": True}


def test_the_opensearch_service_linked_role_only_when_the_stage_creates_it(rendered, tmp_path):
    resources = load(rendered["DEV"] / "elasticsearch.json")["Resources"]
    assert not [r for r in resources.values() if r["Type"] == "AWS::IAM::ServiceLinkedRole"]
    assert resources["Domain"]["DependsOn"] == ["LogsResourcePolicy"]

    first = render("DEV", tmp_path, {"DEV": {"create_opensearch_service_linked_role": True}})
    resources = load(first / "elasticsearch.json")["Resources"]
    [(name, role)] = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::IAM::ServiceLinkedRole"]
    assert role["Properties"]["AWSServiceName"] == "opensearchservice.amazonaws.com"
    assert role["DeletionPolicy"] == "Retain"  # the account's other domains keep using it
    assert name in resources["Domain"]["DependsOn"]
