"""Least privilege and alarms on the rendered DEV and PROD templates (issue 12, item 8).

* one alerts topic per stage (the storage layer's, encrypted, with the stage's e-mail subscriptions) that every
  alarm of every layer and the failed-training rule notify;
* every alarm the issue lists exists, watching what it says;
* no KMS key lets a service principal use it without conditions naming this account's own resources;
* the search domain's admin role trusts exactly the listed principals, the search API holds no KMS action, and
  the model validator may write only the keys it really writes — recorded from the real validator on moto S3;
* API Gateway's account logging role is owned by one stage only.

(General lint, checkov and wiring of every layer: tests/functional/test_deployment.py.)
"""
from __future__ import annotations

import fnmatch
import itertools
import re

import orjson
import pytest

from tests.deploy_kit import REAL_VALUES, REPO, as_list, humilis, load, parameters_file, render, statements

pytestmark = pytest.mark.functional

STAGES = ("DEV", "PROD")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("least-privilege")
    for stage in STAGES:
        render(stage, out)
    return out


def resources(rendered, stage, layer):
    return load(rendered / stage / f"{layer}.json")["Resources"]


def topic(stage):
    from deploy.humilis_run import placeholder

    return placeholder("AlertsTopicArn", stage)


def alarms(rendered, stage):
    """{(layer, logical name): properties} of every CloudWatch alarm of the stage."""
    found = {}
    for path in sorted((rendered / stage).glob("*.json")):
        for name, resource in load(path)["Resources"].items():
            if resource["Type"] == "AWS::CloudWatch::Alarm":
                found[(path.stem, name)] = resource["Properties"]
    return found


# -- the one alerts topic ----------------------------------------------------------------------------------------
def test_every_layer_takes_the_storage_layers_alerts_topic():
    text = (REPO / "environments" / "letgo.yaml.j2").read_text()
    wired = re.findall(r"^\s*alarm_topic_arn:\s*(.+)$", text, re.M)
    assert len(wired) >= 10
    assert set(wired) == {"{$layer_output: {layer_name: storage, output_name: AlertsTopicArn}}"}


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_has_one_encrypted_alerts_topic_in_the_storage_layer(rendered, stage):
    storage = load(rendered / stage / "storage.json")
    topics = {name: r["Properties"] for path in (rendered / stage).glob("*.json")
              for name, r in load(path)["Resources"].items() if r["Type"] == "AWS::SNS::Topic"}
    assert list(topics) == ["AlertsTopic"] and "AlertsTopic" in storage["Resources"]  # the kinesis one is gone
    assert topics["AlertsTopic"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlertsTopicKey", "Arn"]}
    assert storage["Outputs"]["AlertsTopicArn"]["Value"] == {"Ref": "AlertsTopic"}
    subscriptions = sorted((r["Properties"]["Protocol"], r["Properties"]["Endpoint"])
                           for r in storage["Resources"].values() if r["Type"] == "AWS::SNS::Subscription")
    expected = sorted(("email", e.strip()) for e in REAL_VALUES["alarm_emails"].split(",")) if stage == "PROD" else []
    assert subscriptions == expected
    # CloudWatch and EventBridge (the failed-job rule) may publish, for this account only
    policy = storage["Resources"]["AlertsTopicPolicy"]["Properties"]
    assert policy["Topics"] == [{"Ref": "AlertsTopic"}]
    publishers = {s["Principal"]["Service"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(publishers) == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    from deploy.humilis_run import FAKE_ACCOUNT

    assert all(s["Condition"] == {"StringEquals": {"aws:SourceAccount": FAKE_ACCOUNT}} for s in publishers.values())


EXPECTED = {  # (layer, alarm): (namespace, metric) — every alarm the issue lists
    ("search-indexer", "IndexerErrorsAlarm"): ("AWS/Lambda", "Errors"),
    ("statistics", "UpstreamErrorsAlarm"): ("AWS/Lambda", "Errors"),
    ("api-gateway", "AuthorizerErrorsAlarm"): ("AWS/Lambda", "Errors"),
    ("redshift", "LoaderErrorsAlarm"): ("AWS/Lambda", "Errors"),
    ("model-validator", "ValidatorErrorsAlarm"): ("AWS/Lambda", "Errors"),
    ("redshift", "LoaderFailureQueueAlarm"): ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("model-validator", "FailureQueueAlarm"): ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("elasticsearch", "ClusterRedAlarm"): ("AWS/ES", "ClusterStatus.red"),
    ("elasticsearch", "JvmMemoryPressureAlarm"): ("AWS/ES", "JVMMemoryPressure"),
    ("aurora", "CpuAlarm"): ("AWS/RDS", "CPUUtilization"),
    ("aurora", "ConnectionsAlarm"): ("AWS/RDS", "DatabaseConnections"),
    ("redshift", "ClusterHealthAlarm"): ("AWS/Redshift", "HealthStatus"),
    ("redshift", "DiskSpaceAlarm"): ("AWS/Redshift", "PercentageDiskSpaceUsed"),
    ("search-api", "EnvironmentHealthAlarm"): ("AWS/ElasticBeanstalk", "EnvironmentHealth"),
    ("model-serving", "EnvironmentHealthAlarm"): ("AWS/ElasticBeanstalk", "EnvironmentHealth"),
    ("api-gateway", "Api5xxAlarm"): ("AWS/ApiGateway", "5XXError"),
    ("search-api", "Api5xxAlarm"): ("AWS/ApiGateway", "5xx"),
    ("model-serving", "Api5xxAlarm"): ("AWS/ApiGateway", "5xx"),
    ("kinesis", "StreamWriteThroughputAlarm"): ("AWS/Kinesis", "WriteProvisionedThroughputExceeded"),
    ("kinesis", "StreamReadThroughputAlarm"): ("AWS/Kinesis", "ReadProvisionedThroughputExceeded"),
}


@pytest.mark.parametrize("stage", STAGES)
def test_every_listed_alarm_exists_and_every_alarm_notifies_the_one_topic(rendered, stage):
    found = alarms(rendered, stage)
    for (layer, name), (namespace, metric) in EXPECTED.items():
        assert (layer, name) in found, f"{stage}: no alarm {name} in {layer}"
        assert (found[(layer, name)]["Namespace"], found[(layer, name)]["MetricName"]) == (namespace, metric)
    for key, alarm in found.items():
        assert alarm["AlarmActions"] == [topic(stage)] and alarm["OKActions"] == [topic(stage)], key
    # the failure queues page as soon as one message waits
    for key in (("redshift", "LoaderFailureQueueAlarm"), ("model-validator", "FailureQueueAlarm")):
        alarm = found[key]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold"), key
    queue_of = {key: found[key]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
                for key in (("redshift", "LoaderFailureQueueAlarm"), ("model-validator", "FailureQueueAlarm"))}
    assert queue_of == {("redshift", "LoaderFailureQueueAlarm"): "LoaderFailureQueue",
                        ("model-validator", "FailureQueueAlarm"): "FailureQueue"}


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_has_a_throttles_alarm_and_the_listed_ones_an_errors_alarm(rendered, stage):
    found = alarms(rendered, stage)
    functions = [(path.stem, name) for path in sorted((rendered / stage).glob("*.json"))
                 for name, r in load(path)["Resources"].items() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 7

    def watching(layer, function, metric):
        return [k for k, a in found.items() if k[0] == layer and a["Namespace"] == "AWS/Lambda"
                and a["MetricName"] == metric and a["Dimensions"] == [{"Name": "FunctionName",
                                                                        "Value": {"Ref": function}}]]

    for layer, function in functions:
        assert watching(layer, function, "Throttles"), f"{stage}: {layer}/{function} has no throttles alarm"
    for layer, function in (("search-indexer", "IndexerFunction"), ("statistics", "UpstreamFunction"),
                            ("api-gateway", "AuthorizerFunction"), ("redshift", "LoaderFunction"),
                            ("model-validator", "ValidatorFunction"), ("kinesis", "ConsumerFunction")):
        assert watching(layer, function, "Errors"), f"{stage}: {layer}/{function} has no errors alarm"


@pytest.mark.parametrize("stage", STAGES)
def test_failed_training_jobs_notify_the_topic(rendered, stage):
    rule = resources(rendered, stage, "batch")["FailedJobsRule"]["Properties"]
    assert rule["EventPattern"] == {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"],
                                    "detail": {"status": ["FAILED"], "jobQueue": [{"Ref": "JobQueue"}]}}
    assert [t["Arn"] for t in rule["Targets"]] == [topic(stage)]


def test_beanstalk_publishes_the_environment_health_metric_its_alarm_watches(rendered):
    for layer in ("search-api", "model-serving"):
        settings = resources(rendered, "DEV", layer)["Environment"]["Properties"]["OptionSettings"]
        [document] = [s["Value"] for s in settings if s["OptionName"] == "ConfigDocument"]
        assert orjson.loads(document)["CloudWatchMetrics"]["Environment"]["EnvironmentHealth"] == 60


# -- keys --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_no_key_lets_a_service_principal_use_it_without_conditions_naming_this_account(rendered, stage):
    """A service principal's statement needs kms:ViaService and kms:CallerAccount, or an encryption context that
    names this account's own resources (CloudWatch Logs: the log group; SNS: the topic)."""
    from deploy.humilis_run import FAKE_ACCOUNT

    keys = {(path.stem, name): r["Properties"]["KeyPolicy"] for path in sorted((rendered / stage).glob("*.json"))
            for name, r in load(path)["Resources"].items() if r["Type"] == "AWS::KMS::Key"}
    assert ("storage", "DataKey") in keys and ("storage", "AlertsTopicKey") in keys
    service_statements = 0
    for key, policy in keys.items():
        for statement in policy["Statement"]:
            principal = statement.get("Principal", {})
            if statement["Effect"] != "Allow" or not isinstance(principal, dict) or "Service" not in principal:
                continue
            service_statements += 1
            conditions = {name: value for operator in statement.get("Condition", {}).values()
                          for name, value in operator.items()}
            via = "kms:ViaService" in conditions and conditions.get("kms:CallerAccount") == FAKE_ACCOUNT
            contexts = [v for name, v in conditions.items() if name.startswith("kms:EncryptionContext:")]
            values = [str(v) for c in contexts for v in as_list(c)]
            named = bool(values) and all(FAKE_ACCOUNT in v and (f"-{stage.lower()}" in v or f"/{stage.lower()}/" in v)
                                         for v in values)
            assert via or named, f"{stage} {key}: {statement}"
    assert service_statements >= 2  # CloudWatch Logs on the data key, the publishers on the topic key
    data_key = keys[("storage", "DataKey")]
    services = {str(s) for st in data_key["Statement"] if isinstance(st.get("Principal"), dict)
                for s in as_list(st["Principal"].get("Service", []))}
    assert not services & {"s3.amazonaws.com", "kinesis.amazonaws.com", "firehose.amazonaws.com",
                           "sqs.amazonaws.com", "sns.amazonaws.com"}


@pytest.mark.parametrize("stage", STAGES)
def test_every_role_using_the_data_key_names_it(rendered, stage):
    """With no service principal on the key, each role that reads or writes our encrypted data is granted the key
    by its own IAM policy, which names it — never kms:* or Resource "*"."""
    from deploy.humilis_run import placeholder

    key = placeholder("DataKeyArn", stage)
    for path in sorted((rendered / stage).glob("*.json")):
        for name, resource in load(path)["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    if any(str(a).startswith("kms:") for a in as_list(statement["Action"])):
                        assert as_list(statement["Resource"]) == [key], (path.stem, name, statement)
                        assert not any(a in ("kms:*", "*") for a in as_list(statement["Action"]))


# -- roles -------------------------------------------------------------------------------------------------------
def trust(template):
    return template["SearchAdminRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]


def test_search_admin_role_trusts_exactly_the_listed_principals(rendered, tmp_path):
    listed = [p.strip() for p in REAL_VALUES["search_admin_principal_arns"].split(",")]
    assert [(s["Effect"], s["Principal"]) for s in trust(resources(rendered, "PROD", "elasticsearch"))] == [
        ("Allow", {"AWS": listed})]
    two = ["arn:aws:iam::123456789012:role/search-ops", "arn:aws:iam::123456789012:user/alice"]
    out = render("DEV", tmp_path, {"DEV": {"search_admin_principal_arns": " , ".join(two)}})
    assert [(s["Effect"], s["Principal"]) for s in trust(load(out / "elasticsearch.json")["Resources"])] == [
        ("Allow", {"AWS": two})]
    # none listed (DEV as committed): nobody may assume it, the account root least of all
    assert [s["Effect"] for s in trust(resources(rendered, "DEV", "elasticsearch"))] == ["Deny"]
    for stage in STAGES:
        template = resources(rendered, stage, "elasticsearch")
        assert not template["SearchAdminRole"].get("Metadata")  # no checkov skip needed any more
        assert not [s for s in trust(template) if s["Effect"] == "Allow" and "root" in str(s["Principal"])]


def test_prod_refuses_to_render_without_alarm_emails_or_search_admins(tmp_path):
    parameters = parameters_file(tmp_path / "parameters.yaml", {"PROD": {"alarm_emails": "",
                                                                         "search_admin_principal_arns": ""}})
    done = humilis("render", "--stage", "PROD", "--out", str(tmp_path / "out"), "--parameters", str(parameters),
                   check=False)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "alarm_emails: empty" in message and "search_admin_principal_arns: empty" in message


@pytest.mark.parametrize("stage", STAGES)
def test_search_api_instances_hold_no_kms_action_and_serving_only_decrypt(rendered, stage):
    def actions(layer):
        role = resources(rendered, stage, layer)["InstanceRole"]["Properties"]
        return {a for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] for a in as_list(s["Action"])}

    assert not {a for a in actions("search-api") if a.startswith("kms:")}
    assert {a for a in actions("model-serving") if a.startswith("kms:")} == {"kms:Decrypt"}  # SSE-KMS model objects


WRITES = ["models/*/current.json", "models/*/pointer-log/*", "models/*/validated/*", "models/*/rejected/*",
          "models/_validation/key.json"]


def validator_writes(template, stage="DEV"):
    from deploy.humilis_run import placeholder

    bucket = placeholder("ModelsBucketArn", stage)
    statements = template["ValidatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writes = [s for s in statements if any(a in ("s3:PutObject", "s3:*", "s3:Put*") for a in as_list(s["Action"]))]
    assert all(as_list(s["Action"]) == ["s3:PutObject"] for s in writes), writes
    patterns = [r for s in writes for r in as_list(s["Resource"])]
    assert all(p.startswith(bucket + "/") for p in patterns), patterns
    return [p[len(bucket) + 1:] for p in patterns]


def test_the_validators_write_statements_name_only_its_keys(rendered):
    for stage in STAGES:
        assert sorted(validator_writes(resources(rendered, stage, "model-validator"), stage)) == sorted(WRITES)


# -- the validator's real writes, on moto S3 ---------------------------------------------------------------------
_buckets = itertools.count(1)


@pytest.fixture(scope="module")
def aws(request, tmp_path_factory):
    from tests.ml_serving_kit import shared_aws

    return shared_aws(request, tmp_path_factory)


def test_the_real_validator_writes_only_inside_its_write_statements_and_uses_each(aws, rendered, sentry_file):
    """The validator validates a good candidate, rejects a bad one and rolls a broken pointer back against the
    real serving app; every key it writes is matched by a write statement, every statement is used, and what
    training and operators write (versions, candidates, the kill switch) matches none."""
    from handlers.ml.serving.client import HttpClient
    from handlers.ml.serving.validator import Outcome, handle_event
    from handlers.ml.store import ModelStore
    from tests.ml_kit import definition
    from tests.ml_serving_kit import TickClock, pointer_event, publish, publish_live, serving, trained_artefact

    model = definition()
    store = ModelStore(aws.bucket(f"least-privilege-models-{next(_buckets)}"), s3=aws.s3(), clock=TickClock())
    written, recording = [], [False]

    def record(params, **_):
        if recording[0]:
            written.append(params["Key"])

    store.s3.meta.events.register("provide-client-params.s3.PutObject", record)

    def validator(key):
        recording[0] = True
        try:
            return handle_event(pointer_event(store.bucket, key), definitions={model.name: model}, store=store,
                                client=HttpClient(server.url))
        finally:
            recording[0] = False

    first = publish_live(store, trained_artefact("good"))
    with serving(model, store) as (server, _):
        good = publish(store, trained_artefact("good", seed=12))
        assert validator(store.candidate_key(model.name)).outcome is Outcome.VALIDATED
        bad = publish(store, trained_artefact("inflated"))
        assert validator(store.candidate_key(model.name)).outcome is Outcome.REJECTED
        live = store.current(model.name)
        store.s3.put_object(Bucket=store.bucket, Key=store.pointer_key(model.name),
                            Body=orjson.dumps({**live.to_dict(), "version": "00000000T000000000Z-000000000000"}))
        assert validator(store.pointer_key(model.name)).outcome is Outcome.ROLLED_BACK
    assert first != good != bad and written

    patterns = validator_writes(resources(rendered, "DEV", "model-validator"))
    for key in written:
        assert any(fnmatch.fnmatchcase(key, p) for p in patterns), f"the validator wrote {key}, which it may not"
    for pattern in patterns:
        assert any(fnmatch.fnmatchcase(key, pattern) for key in written), f"{pattern} is never written: too wide"
    others = [store.artefact_key(model.name, good), store.metadata_key(model.name, good),
              store.candidate_key(model.name), store.kill_switch_key(model.name)]
    assert not [k for k in others if any(fnmatch.fnmatchcase(k, p) for p in patterns)]


# -- API Gateway's account logging role --------------------------------------------------------------------------
def test_one_stage_owns_the_account_logging_role(rendered):
    import yaml

    owns = {stage: "Account" in resources(rendered, stage, "api-gateway") for stage in STAGES}
    parameters = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    assert parameters["_default"]["manage_account_logging_role"] is False
    assert owns == {stage: bool(parameters.get(stage, {}).get("manage_account_logging_role", False))
                    for stage in STAGES}
    assert owns == {"DEV": False, "PROD": True}  # DEV beside PROD in one account must not delete PROD's role
    meta = yaml.safe_load((REPO / "layers" / "api-gateway" / "meta.yaml").read_text())
    assert meta["meta"]["parameters"]["manage_account_logging_role"]["value"] is False


# -- application database users ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_applications_log_in_as_their_own_database_users_never_with_the_master_secret(rendered, stage):
    """Each function that reaches Aurora logs in as the user `letgo db migrate` made for it (IAM authentication:
    rds-db:connect on that user only) and can read the master secret nowhere (tests/functional/
    test_database_roles.py checks those users' grants on a real PostgreSQL)."""
    from deploy.humilis_run import placeholder

    migration = (REPO / "migrations" / "postgres" / "0004_application_roles.sql").read_text()
    master = placeholder("SecretArn", stage)
    users = {("kinesis", "ConsumerFunction"): "letgo_consumer",
             ("statistics", "StatisticsFunction"): "letgo_statistics",
             ("statistics", "UpstreamFunction"): "letgo_upstream_alerts"}
    for (layer, function), user in users.items():
        assert f"'{user}'" in migration, user  # a role the migration creates
        template = resources(rendered, stage, layer)
        properties = template[function]["Properties"]
        variables = properties["Environment"]["Variables"]
        assert variables["DATABASE_IAM_USER"] == user and variables["DATABASE_SECRET_ARN"] == ""
        role = properties["Role"]["Fn::GetAtt"][0]
        allowed = [s for p in template[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        connects = [r for s in allowed if "rds-db:connect" in as_list(s["Action"]) for r in as_list(s["Resource"])]
        assert [c["Fn::Sub"].rsplit(":", 1)[-1] for c in connects] == [
            f"{placeholder('ClusterResourceId', stage)}/{user}"], (function, connects)
        for path in (rendered / stage).glob("*.json"):
            if path.stem in ("kinesis", "statistics"):
                for _, statement in statements(load(path)):
                    assert master not in as_list(statement.get("Resource", [])), (path.stem, statement)


@pytest.mark.parametrize("stage", STAGES)
def test_the_warehouse_loader_logs_in_as_its_own_redshift_user_never_with_the_master_secret(rendered, stage):
    """The loader calls the Data API with DbUser letgo_loader (handlers/warehouse/loader.py): its role may get
    temporary credentials for exactly that user in the one database — no other user, no AutoCreate
    (redshift:CreateClusterUser), no DbGroups (redshift:JoinGroup) — and can read no secret, the cluster's master
    secret least of all. The user's grants: letgo/warehouse/ddl.py, checked as text in
    tests/unit/test_warehouse_ddl.py."""
    from letgo.warehouse import ddl

    template = resources(rendered, stage, "redshift")
    cluster = f"letgo-warehouse-{stage.lower()}"
    assert template["Cluster"]["Properties"]["ClusterIdentifier"] == cluster
    assert template["Cluster"]["Properties"]["DBName"] == ddl.DATABASE
    function = template["LoaderFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["REDSHIFT_DB_USER"] == ddl.LOADER_USER == "letgo_loader"
    assert variables["DATABASE"] == ddl.DATABASE and variables["CLUSTER_ID"] == {"Ref": "Cluster"}
    assert not [name for name in variables if "SECRET" in name]
    assert function["Role"] == {"Fn::GetAtt": ["LoaderRole", "Arn"]}
    allowed = [s for p in template["LoaderRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert not template["LoaderRole"]["Properties"].get("ManagedPolicyArns")
    actions = [a for s in allowed for a in as_list(s["Action"])]
    assert not [a for a in actions
                if a.startswith(("secretsmanager:", "redshift:")) and a != "redshift:GetClusterCredentials"]
    assert not [a for a in actions if "*" in a]
    [credentials] = [s for s in allowed if "redshift:GetClusterCredentials" in as_list(s["Action"])]
    assert credentials["Effect"] == "Allow" and as_list(credentials["Action"]) == ["redshift:GetClusterCredentials"]
    assert "Condition" not in credentials
    prefix = "arn:${AWS::Partition}:redshift:${AWS::Region}:${AWS::AccountId}:"
    assert [r["Fn::Sub"] for r in as_list(credentials["Resource"])] == [
        f"{prefix}dbuser:{cluster}/letgo_loader", f"{prefix}dbname:{cluster}/warehouse"]
    # nothing in the layer's policies names the master secret (the operators' tools read it with their own
    # credentials, through the stack output MasterSecretArn)
    for name, statement in statements(load(rendered / stage / "redshift.json")):
        assert "MasterPasswordSecretArn" not in orjson.dumps(statement).decode(), (name, statement)
