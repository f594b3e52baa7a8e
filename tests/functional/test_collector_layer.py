"""The api-gateway layer: a Segment-compatible collector that puts each request body on the event stream
through an API Gateway service integration, behind a write-key authorizer. Checked on the rendered DEV
template (real humilis, no AWS), plus the round trip of an unmodified Segment SDK body through the same
transformation the request template applies, into the consumer's decoder."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

import jinja2
import pytest
import yaml

from deploy.humilis_run import placeholder
from handlers.core.kinesis import RawRecord
from tests.conftest import EVENTS
from tests.deploy_kit import REPO, humilis, load

pytestmark = pytest.mark.functional
STAGE = "DEV"
ROUTES = {"batch", "import", "track", "identify", "screen", "page", "group", "alias"}
NOT_IN_MOTO = {"AWS::ApiGateway::Stage", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey",
               "AWS::ApiGateway::Authorizer", "AWS::ApiGateway::GatewayResponse", "AWS::ApiGateway::Account"}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("rendered")
    humilis("render", "--stage", STAGE, "--out", str(out))
    return load(out / STAGE / "api-gateway.json")


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def paths(template: dict[str, Any]) -> dict[str, str]:
    """Logical id of each AWS::ApiGateway::Resource -> its full path, following ParentId."""
    resources = of_type(template, "AWS::ApiGateway::Resource")

    def path(name: str) -> str:
        props = resources[name]["Properties"]
        parent = props["ParentId"]
        prefix = "" if parent == {"Fn::GetAtt": ["RestApi", "RootResourceId"]} else path(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    return {name: path(name) for name in resources}


PARTITION_KEY_PATHS = ("$.batch[0].userId", "$.batch[0].anonymousId", "$.userId", "$.anonymousId")


def apply_request_template(vtl: str, body: bytes, request_id: str) -> dict[str, Any]:
    """What API Gateway does with the request template: a partition-key preamble (#set/#if over $input.path,
    emulated for exactly those paths, in that order), then the JSON line with two expressions."""
    *preamble, line = vtl.split("\n")
    assert [p for p in PARTITION_KEY_PATHS if any(p in s for s in preamble)] == list(PARTITION_KEY_PATHS)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    candidates = [(payload.get("batch") or [{}])[0].get("userId"), (payload.get("batch") or [{}])[0].get("anonymousId"),
                  payload.get("userId"), payload.get("anonymousId")] if isinstance(payload, dict) else []
    key = next((c for c in candidates if c), request_id)
    rendered = line.replace("$util.base64Encode($input.body)", base64.b64encode(body).decode())
    rendered = rendered.replace('$util.escapeJavaScript(\"$key\")', key)
    assert "$" not in rendered, f"VTL this test does not emulate: {vtl}"
    return json.loads(rendered)


def api_gateway_entry() -> dict[str, Any]:
    """The api-gateway entry of the environment file, rendered with the stage's parameters."""
    parameters = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    values = {**parameters["_default"], **parameters.get(STAGE, {})}
    from letgo.ops.humilis_checks import stage_ready

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["letgo_stage_ready"] = stage_ready  # as humilis registers it (the humilis.jinja2_filters entry point)
    text = env.from_string((REPO / "environments" / "letgo.yaml.j2").read_text()).render(
        **values, stage=STAGE, __context={"stage": STAGE}, __env={})
    [entry] = [layer for layer in yaml.safe_load(text)["letgo"]["layers"] if layer["layer"] == "api-gateway"]
    return entry


def test_every_v1_route_is_a_post_behind_the_write_key_authorizer_with_an_api_key(template):
    [(api_name, api)] = of_type(template, "AWS::ApiGateway::RestApi").items()
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    routes = {path: name for name, path in paths(template).items() if path.startswith("/v1/")}
    assert set(routes) == {f"/v1/{route}" for route in ROUTES}

    [(authorizer_name, authorizer)] = of_type(template, "AWS::ApiGateway::Authorizer").items()
    auth = authorizer["Properties"]
    assert auth["Type"] == "REQUEST" and auth["IdentitySource"] == "method.request.header.Authorization"
    assert auth["AuthorizerResultTtlInSeconds"] == 300
    assert "${AuthorizerFunction.Arn}" in auth["AuthorizerUri"]["Fn::Sub"]

    methods = [m["Properties"] for m in of_type(template, "AWS::ApiGateway::Method").values()]
    assert len(methods) == len(ROUTES)
    for method in methods:
        assert method["ResourceId"]["Ref"] in routes.values()
        assert method["HttpMethod"] == "POST"
        assert method["AuthorizationType"] == "CUSTOM" and method["AuthorizerId"] == {"Ref": authorizer_name}
        assert method["ApiKeyRequired"] is True
        assert method["RestApiId"] == {"Ref": api_name}
    assert {m["ResourceId"]["Ref"] for m in methods} == set(routes.values())


def test_each_route_puts_the_whole_body_as_one_record_on_the_kinesis_layers_stream(template):
    stream_name = placeholder("StreamName", STAGE)  # what the kinesis layer's StreamName output renders to
    assert api_gateway_entry()["stream_name"] == {
        "$layer_output": {"layer_name": "kinesis", "output_name": "StreamName"}}
    for method in of_type(template, "AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS" and integration["IntegrationHttpMethod"] == "POST"
        assert re.fullmatch(r"arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:kinesis:action/PutRecord",
                            integration["Uri"]["Fn::Sub"])
        assert integration["Credentials"] == {"Fn::GetAtt": ["IntegrationRole", "Arn"]}
        assert integration["PassthroughBehavior"] == "NEVER"  # never a raw body as PutRecord's JSON
        body = b'{"batch": [{"type": "track", "event": "Lead", "properties": {"title": "caf\xc3\xa9 \\"x\\""}}]}'
        for content_type, vtl in integration["RequestTemplates"].items():
            request = apply_request_template(vtl, body, "req-1")
            assert request == {"StreamName": stream_name, "Data": base64.b64encode(body).decode(),
                               "PartitionKey": "req-1"}, content_type  # no user in the body: the request id
            by_user = b'{"batch": [{"type": "track", "event": "Lead", "anonymousId": "anon-7"}]}'
            assert apply_request_template(vtl, by_user, "req-2")["PartitionKey"] == "anon-7"
        responses = {r["StatusCode"]: r for r in integration["IntegrationResponses"]}
        assert json.loads(responses["200"]["ResponseTemplates"]["application/json"]) == {"success": True}
        assert "SelectionPattern" not in responses["200"]
        assert {r.get("SelectionPattern") for r in responses.values()} >= {"4\\d{2}", "5\\d{2}"}
        declared = {r["StatusCode"] for r in method["Properties"]["MethodResponses"]}
        assert set(responses) <= declared and "429" in declared  # throttled PutRecord is answered 429


def test_the_integration_role_may_only_put_records_on_the_stream(template):
    role = template["Resources"]["IntegrationRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    granted = {(json.dumps(s["Action"]), json.dumps(s["Resource"]))
               for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]
               if s["Effect"] == "Allow"}
    assert granted == {('"kinesis:PutRecord"', json.dumps(placeholder("StreamArn", STAGE))),
                       ('"kms:GenerateDataKey"', json.dumps(placeholder("DataKeyArn", STAGE)))}


def test_stage_usage_plan_and_authorizer_function(template):
    [stage] = [r["Properties"] for r in of_type(template, "AWS::ApiGateway::Stage").values()]
    assert stage["StageName"] == "v1" and stage["TracingEnabled"] is True
    [deployment] = of_type(template, "AWS::ApiGateway::Deployment")
    assert stage["DeploymentId"] == {"Ref": deployment}
    assert set(template["Resources"][deployment]["DependsOn"]) >= set(of_type(template, "AWS::ApiGateway::Method"))
    [settings] = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    assert settings["DataTraceEnabled"] is False
    log_group = stage["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][log_group]["Properties"]["KmsKeyId"]
    log_format = stage["AccessLogSetting"]["Format"]
    assert "apiKey" not in log_format and "Authorization" not in log_format  # the write key is never logged

    [plan] = [r["Properties"] for r in of_type(template, "AWS::ApiGateway::UsagePlan").values()]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestApi"}, "Stage": "v1"}]
    assert plan["Throttle"]["RateLimit"] > 0 and plan["Quota"]["Limit"] > 0

    function = template["Resources"]["AuthorizerFunction"]["Properties"]
    assert function["Handler"] == "handlers.collector.authorizer.handler" and function["Runtime"] == "python3.11"
    assert set(function["Environment"]["Variables"]) >= {"WRITE_KEYS_SECRET_ARN"}
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    assert function["Code"]["S3Key"].endswith(manifest["authorizer"]["file"])
    [permission] = [r["Properties"] for r in of_type(template, "AWS::Lambda::Permission").values()]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${RestApi}/authorizers/*")
    role = template["Resources"]["AuthorizerRole"]["Properties"]
    actions = {a for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]
               for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    # DEV has no write-keys secret ARN: no GetSecretValue statement (an empty Resource would not deploy)
    assert not any(a.startswith("secretsmanager:") for a in actions)
    assert set(template["Outputs"]) == {"RestApiId", "CollectorUrl", "AuthorizerFunctionArn", "IntegrationRoleArn"}
    assert all(o["Description"] for o in template["Outputs"].values())


def test_nothing_refers_to_a_resource_moto_skips_except_by_name(template):
    """moto's CloudFormation (the LOCAL stage) skips these types, and a GetAtt/Sub on one fails there;
    a Ref only yields None (the methods' AuthorizerId, harmless)."""
    skipped = {name for name, r in template["Resources"].items() if r["Type"] in NOT_IN_MOTO}
    text = json.dumps({"Resources": template["Resources"], "Outputs": template["Outputs"]})
    for name in skipped:
        assert not re.search(r'"Fn::GetAtt": \["%s"|\$\{%s[.}]' % (name, name), text), name
        assert f'"Ref": "{name}"' not in json.dumps(template["Outputs"]), name
    assert not [n for n, r in template["Resources"].items() if '"Ref": "Stage"' in json.dumps(r)]


def test_an_unmodified_segment_sdk_batch_round_trips_to_three_events(template, processor):
    body = (EVENTS / "segment_python_batch.json").read_bytes()
    [method] = [m for m in of_type(template, "AWS::ApiGateway::Method").values()
                if m["Properties"]["ResourceId"] == {"Ref": "BatchResource"}]
    vtl = method["Properties"]["Integration"]["RequestTemplates"]["application/json"]
    request = apply_request_template(vtl, body, str(uuid.uuid4()))
    # Kinesis stores base64-decoded Data; the Lambda event source hands it to the consumer base64-encoded again
    assert base64.b64decode(request["Data"]) == body
    record = RawRecord("49600000000000000000000000000000000000000000000001", request["PartitionKey"],
                       request["Data"], time.time())
    result = processor.process([record])
    assert [e.type for e in result.events] == ["Lead", "Screen", "Identify"]
    assert not result.rejections
