"""Every layer renders for every stage, lints clean, passes checkov, and is wired as the design says.

Rendering runs the real humilis (its own virtualenv) without AWS: STS and cross-layer references are
stubbed with well-formed placeholders (deploy/humilis_run.py). The round trip against moto server is an
e2e test (tests/e2e/test_humilis_roundtrip.py).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy_kit import DISABLED, LAYERS, REPO, STAGES, as_list, checkov, humilis, load, render, statements

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    for stage in STAGES:
        render(stage, out)
    return out


def template(rendered, stage, layer):
    return load(rendered / stage / f"{layer}.json")


@pytest.mark.parametrize("stage", STAGES)
def test_every_enabled_layer_renders_with_resources_for_every_stage(rendered, stage):
    expected = [layer for layer in LAYERS if layer not in DISABLED.get(stage, set())]
    assert sorted(p.stem for p in (rendered / stage).glob("*.json")) == sorted(expected)
    for layer in expected:
        assert template(rendered, stage, layer)["Resources"], f"{stage}/{layer} is empty (missing layer folder?)"


def test_cfn_lint_reports_nothing(rendered):
    files = sorted(str(p) for p in rendered.glob("*/*.json"))
    done = subprocess.run([str(REPO / ".venv" / "bin" / "cfn-lint"), *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_finds_nothing_unjustified(rendered):
    """Every check runs (open-source checkov has no severities offline); each skip carries its reason."""
    found = checkov(rendered)
    assert found.failed == []
    assert found.passed > 300  # it really ran, over every stage's templates
    assert found.unjustified_skips() == []


@pytest.mark.parametrize("stage", STAGES)
def test_no_policy_allows_every_action_on_every_resource(rendered, stage):
    for path in (rendered / stage).glob("*.json"):
        for name, statement in statements(load(path)):
            if statement.get("Effect") != "Allow":
                continue
            actions, resources = as_list(statement.get("Action", [])), as_list(statement.get("Resource", []))
            assert not ("*" in actions and "*" in resources), f"{path.name}:{name} allows * on *"
            assert not any(a.endswith(":*") for a in actions if isinstance(a, str)) or "*" not in resources, \
                f"{path.name}:{name} allows a whole service on every resource: {statement}"


@pytest.mark.parametrize("stage", STAGES)
def test_buckets_are_encrypted_private_and_tls_only(rendered, stage):
    resources = template(rendered, stage, "storage")["Resources"]
    buckets = {n: r for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert {"RawBucket", "QuarantineBucket", "ProcessedBucket", "ModelsBucket", "ArtifactsBucket"} <= set(buckets)
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        block = props["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        policy = resources[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in policy), name
    raw_rules = buckets["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(t["StorageClass"] == "STANDARD_IA" for r in raw_rules for t in r.get("Transitions", []))


@pytest.mark.parametrize("stage", STAGES)
def test_consumer_mapping_reads_the_stream_with_partial_failures_and_an_on_failure_queue(rendered, stage):
    resources = template(rendered, stage, "kinesis")["Resources"]
    [(stream_name, stream)] = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::Kinesis::Stream"]
    [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    [(function_name, function)] = [(n, r) for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [stream_name, "Arn"]}
    assert mapping["FunctionName"] in ({"Ref": function_name}, {"Fn::GetAtt": [function_name, "Arn"]})
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["Properties"]["RetentionPeriodHours"] >= 168
    assert function["Properties"]["Handler"] == "handlers.tracking.lambda_consumer.handler"
    assert function["Properties"]["Runtime"] == "python3.11"
    env = function["Properties"]["Environment"]["Variables"]
    assert {"RAW_BUCKET", "QUARANTINE_BUCKET", "FIREHOSE_STREAM", "STAGE"} <= set(env)
    assert not any("dsn" in str(v).lower() and "://" in str(v) for v in env.values()), "a secret in the template"


def test_consumer_code_is_the_packaged_zip(rendered):
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    resources = template(rendered, "DEV", "kinesis")["Resources"]
    [function] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert function["Code"]["S3Key"].endswith(manifest["consumer"]["file"])


def metrics_stream_window() -> int:
    """The gcd of the metric windows, computed by the statistics function's own loader."""
    from handlers.schema.event_types import load_catalog
    from handlers.statistics.definitions import load_metrics
    from handlers.tracking.settings import load_settings

    settings = load_settings(REPO / "config" / "tracking.yaml")
    catalog = load_catalog(REPO / "event_types", max_depth=settings.max_depth)
    return load_metrics(REPO / "metrics", catalog).stream_window_seconds


@pytest.mark.parametrize("stage", STAGES)
def test_statistics_mapping_reads_the_stream_in_tumbling_windows_of_the_metrics_gcd(rendered, stage):
    from deploy.humilis_run import placeholder

    resources = template(rendered, stage, "statistics")["Resources"]
    [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    function_name, function = "StatisticsFunction", resources["StatisticsFunction"]
    # the kinesis layer's stream (its StreamArn output, stubbed with its placeholder when rendering)
    assert mapping["EventSourceArn"] == placeholder("StreamArn", stage)
    assert mapping["FunctionName"] in ({"Ref": function_name}, {"Fn::GetAtt": [function_name, "Arn"]})
    assert mapping["TumblingWindowInSeconds"] == metrics_stream_window()
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is False  # a window's state is retried whole
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["OnFailureQueue", "Arn"]}
    assert function["Properties"]["Handler"] == "handlers.statistics.lambda_statistics.handler"
    assert function["Properties"]["Runtime"] == "python3.11"
    assert {"DATABASE_SECRET_ARN", "DATABASE_HOST", "DATABASE_PORT", "DATABASE_NAME"} <= set(
        function["Properties"]["Environment"]["Variables"])
    role = resources["StatisticsRole"]["Properties"]
    [read] = [s for s in role["Policies"][0]["PolicyDocument"]["Statement"] if s.get("Sid") == "ReadStream"]
    assert read["Resource"] == placeholder("StreamArn", stage)


def test_statistics_code_is_the_packaged_zip(rendered):
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    resources = template(rendered, "DEV", "statistics")["Resources"]
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 2  # the tumbling-window handler and the upstream data alerts
    assert all(f["Code"]["S3Key"].endswith(manifest["statistics"]["file"]) for f in functions)


def test_database_is_private_encrypted_with_managed_credentials(rendered):
    for stage in ("DEV", "PROD"):
        resources = template(rendered, stage, "aurora")["Resources"]
        [cluster] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::RDS::DBCluster"]
        assert cluster["StorageEncrypted"] is True and cluster["ManageMasterUserPassword"] is True
        assert "MasterUserPassword" not in cluster
        instances = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::RDS::DBInstance"]
        assert instances and all(i.get("PubliclyAccessible") is False for i in instances)
    prod = template(rendered, "PROD", "aurora")["Resources"]
    assert [r["Properties"]["DeletionProtection"] for r in prod.values()
            if r["Type"] == "AWS::RDS::DBCluster"] == [True]


def test_statistics_replay_parameter_restarts_the_mapping_at_that_time(tmp_path):
    """`letgo metrics replay --stage` deploys with replay_from: the mapping is replaced AT_TIMESTAMP."""
    import yaml

    parameters = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    parameters["DEV"]["statistics_replay_from"] = 1764151200
    changed = tmp_path / "parameters.yaml"
    changed.write_text(yaml.safe_dump(parameters))
    humilis("render", "--stage", "DEV", "--out", str(tmp_path / "out"), "--parameters", str(changed))
    resources = load(tmp_path / "out" / "DEV" / "statistics.json")["Resources"]
    [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["StartingPosition"] == "AT_TIMESTAMP" and mapping["StartingPositionTimestamp"] == 1764151200
    assert mapping["MaximumRecordAgeInSeconds"] == -1
    outputs = load(tmp_path / "out" / "DEV" / "statistics.json")["Outputs"]
    assert outputs["StartingPosition"]["Value"] == "AT_TIMESTAMP:1764151200"  # what make deploy keeps


def test_statistics_without_its_mapping_for_the_first_update_of_a_replay(tmp_path):
    """A replay removes the mapping in one update and adds it at T in the next (letgo/ops/replay.py)."""
    out = render("DEV", tmp_path, {"DEV": {"statistics_mapping": False}})
    template = load(out / "statistics.json")
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert "StartingPosition" not in template["Outputs"] and "EventSourceMappingId" not in template["Outputs"]
    assert template["Resources"]["StatisticsFunction"]  # the function, its queue and alarms stay


@pytest.mark.parametrize("stage", STAGES)
def test_firehose_partitions_processed_events_by_type_and_event_date(rendered, stage):
    resources = template(rendered, stage, "kinesis")["Resources"]
    [stream] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::KinesisFirehose::DeliveryStream"]
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"] == "events/type=!{partitionKeyFromQuery:type}/dt=!{partitionKeyFromQuery:dt}/"
    assert s3["ErrorOutputPrefix"].startswith("errors/")
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["BufferingHints"]["SizeInMBs"] >= 64  # the minimum with dynamic partitioning
    processing = s3["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    [extraction] = [p for p in processing["Processors"] if p["Type"] == "MetadataExtraction"]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in extraction["Parameters"]}
    assert parameters == {"MetadataExtractionQuery": "{type: .type, dt: .timestamp[0:10]}",
                          "JsonParsingEngine": "JQ-1.6"}
    # the consumer ends every Firehose record with "\n" itself, so Firehose must not append a second one
    assert not any(p["Type"] == "AppendDelimiterToRecord" for p in processing["Processors"])


@pytest.mark.parametrize("stage", [s for s in STAGES if "jupyterhub" not in DISABLED.get(s, set())])
def test_notebooks_run_on_a_private_imdsv2_spot_instance_with_a_read_only_role(rendered, stage):
    from deploy.humilis_run import placeholder

    resources = template(rendered, stage, "jupyterhub")["Resources"]
    by_type = {}
    for name, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append((name, resource["Properties"]))

    # one spot instance (one-time request), IMDSv2 only, encrypted gp3 root volume, no public IP
    [(template_name, launch_template)] = by_type["AWS::EC2::LaunchTemplate"]
    data = launch_template["LaunchTemplateData"]
    market = data["InstanceMarketOptions"]
    assert market["MarketType"] == "spot" and market["SpotOptions"]["SpotInstanceType"] == "one-time"
    assert float(market["SpotOptions"]["MaxPrice"]) > 0
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    [root] = data["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeType"] == "gp3" and root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["KmsKeyId"] == placeholder("DataKeyArn", stage)
    [interface] = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False
    assert interface["SubnetId"] == placeholder("PrivateSubnetIds", stage).split(",")[0]
    [(_, instance)] = by_type["AWS::EC2::Instance"]
    assert instance["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": template_name}
    assert not {"NetworkInterfaces", "SubnetId", "InstanceMarketOptions"} & set(instance)  # all from the template
    user_data = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "--ip 127.0.0.1" in user_data and "systemctl enable" in user_data
    assert not any(word in user_data.lower() for word in ("password", "aws_secret", "token=")), "a secret in user data"

    # no ingress at all (Session Manager); egress HTTPS and Redshift inside the VPC only
    [(_, group)] = by_type["AWS::EC2::SecurityGroup"]
    assert not group.get("SecurityGroupIngress")
    assert not [r for r in by_type.get("AWS::EC2::SecurityGroupIngress", [])]
    egress = {(rule["FromPort"], rule["ToPort"], rule["CidrIp"]) for rule in group["SecurityGroupEgress"]}
    assert egress == {(443, 443, "0.0.0.0/0"), (5439, 5439, placeholder("VpcCidr", stage))}

    # the role: Session Manager's managed policy, otherwise read-only and scoped
    [(_, role)] = by_type["AWS::IAM::Role"]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]
    allowed = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    actions = {a for s in allowed for a in as_list(s["Action"])}
    assert not any("*" in a for a in actions), actions
    assert {a for a in actions if a.startswith("s3:")} <= {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
    assert {a for a in actions if a.startswith("kms:")} == {"kms:Decrypt"}
    assert all(a.split(":")[1].startswith(("Get", "List", "BatchGet", "Describe", "Decrypt", "JoinGroup"))
               for a in actions), actions
    assert "redshift:GetClusterCredentialsWithIAM" not in actions  # its IAMR: user cannot be put in a group
    for statement in allowed:
        assert "*" not in as_list(statement["Resource"]), statement
    bucket_arns = {placeholder("ProcessedBucketArn", stage), placeholder("RawBucketArn", stage)}
    [read] = [s for s in allowed if "s3:GetObject" in as_list(s["Action"])]
    assert set(as_list(read["Resource"])) == {f"{arn}/*" for arn in bucket_arns}

    def redshift_resources(action):
        return [r["Fn::Sub"] for s in allowed if action in as_list(s["Action"]) for r in as_list(s["Resource"])]

    cluster = placeholder("ClusterIdentifier", stage)
    prefix = "arn:${AWS::Partition}:redshift:${AWS::Region}:${AWS::AccountId}:"
    assert redshift_resources("redshift:JoinGroup") == [f"{prefix}dbgroup:{cluster}/data_science"]
    assert sorted(redshift_resources("redshift:GetClusterCredentials")) == sorted(
        [f"{prefix}dbuser:{cluster}/notebook_*", f"{prefix}dbname:{cluster}/warehouse"])


def test_warehouse_loader_receives_every_delivered_object_and_keeps_failures(rendered):
    """Processed bucket -> EventBridge -> loader (retries, then a queue); runs the packaged zip, scoped IAM."""
    from deploy.humilis_run import placeholder

    storage = template(rendered, "DEV", "storage")["Resources"]
    assert storage["ProcessedBucket"]["Properties"]["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    resources = template(rendered, "DEV", "redshift")["Resources"]
    function = resources["LoaderFunction"]["Properties"]
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    assert function["Code"]["S3Key"].endswith(manifest["warehouse"]["file"])
    assert function["Handler"] == "handlers.warehouse.loader.handler"
    variables = function["Environment"]["Variables"]
    from letgo.warehouse.ddl import CLUSTER_DAYS
    assert variables["CLUSTER_DAYS"] == str(CLUSTER_DAYS)  # the views' cutoff and the loader's window agree
    bucket = placeholder("ProcessedBucketArn", "DEV").split(":")[-1]
    assert variables["PROCESSED_BUCKET"] == bucket
    assert variables["COPY_ROLE_ARN"] == {"Fn::GetAtt": ["SpectrumRole", "Arn"]}
    rule = resources["DeliveredObjectsRule"]["Properties"]
    assert rule["EventPattern"]["detail"] == {"bucket": {"name": [bucket]},
                                              "object": {"key": [{"prefix": "events/type="}]}}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["LoaderFunction", "Arn"]}
    invoke = resources["LoaderInvokeConfig"]["Properties"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["LoaderFailureQueue", "Arn"]}
    expire = resources["ExpireRule"]["Properties"]
    assert json.loads(expire["Targets"][0]["Input"]) == {"action": "expire"} and expire["ScheduleExpression"]
    policy = {s["Sid"]: s for s in resources["LoaderRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert policy["ReadLoadSpecs"]["Resource"].endswith("/warehouse/load/*")  # not the events themselves
    assert policy["FollowOwnStatements"]["Condition"]  # "*" only for the caller's own statements
    assert policy["RunStatementsOnTheCluster"]["Resource"]["Fn::Sub"].endswith(":cluster:letgo-warehouse-dev")


@pytest.mark.parametrize("stage", [s for s in STAGES if "search-api" not in DISABLED.get(s, set())])
def test_search_api_is_reached_only_through_the_http_api_and_reads_only_its_domain(rendered, stage):
    """Beanstalk in private subnets behind our internal ALB; the HTTP API's VPC link is the only way in."""
    from deploy.humilis_run import placeholder

    resources = template(rendered, stage, "search-api")["Resources"]
    balancer = resources["LoadBalancer"]["Properties"]
    assert balancer["Scheme"] == "internal"
    assert balancer["Subnets"] == placeholder("PrivateSubnetIds", stage).split(",")
    options = {(o["Namespace"], o["OptionName"]): o["Value"]
               for o in resources["Environment"]["Properties"]["OptionSettings"]}
    assert options[("aws:elbv2:loadbalancer", "SharedLoadBalancer")] == {"Ref": "LoadBalancer"}
    assert options[("aws:ec2:vpc", "AssociatePublicIpAddress")] == "false"
    assert options[("aws:ec2:vpc", "ELBScheme")] == "internal"
    assert options[("aws:autoscaling:launchconfiguration", "DisableIMDSv1")] == "true"
    assert options[("aws:elasticbeanstalk:application:environment", "LETGO_SEARCH_BACKEND")] == "opensearch"
    assert options[("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath")] == "/health"
    integration = resources["Integration"]["Properties"]
    assert (integration["ConnectionType"], integration["IntegrationUri"]) == ("VPC_LINK", {"Ref": "Listener"})
    ingress = resources["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [rule["CidrIp"] for rule in ingress] == [placeholder("VpcCidr", stage)]  # never 0.0.0.0/0
    stage_settings = resources["ApiStage"]["Properties"]
    assert stage_settings["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0 and stage_settings["AccessLogSettings"]
    policy = {s["Sid"]: s
              for s in resources["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert policy["SearchDomainHttp"]["Resource"] == placeholder("DomainArn", stage) + "/*"
    assert not {"es:ESHttpPut", "es:ESHttpDelete"} & set(policy["SearchDomainHttp"]["Action"])  # it only reads
    assert "ReadObjects" not in policy  # the search API reads no bucket
    # templates and aliases are made by `letgo search setup` as the domain admin, not by the services
    assert options[("aws:elasticbeanstalk:application:environment", "LETGO_SEARCH_SETUP")] == "0"
    indexer = template(rendered, stage, "search-indexer")["Resources"]["IndexerFunction"]["Properties"]
    assert indexer["Environment"]["Variables"]["LETGO_SEARCH_SETUP"] == "0"


def test_training_runs_on_schedule_per_model_and_only_writes_the_model_store(rendered):
    from deploy.humilis_run import placeholder

    resources = template(rendered, "DEV", "batch")["Resources"]
    models = sorted(p.stem for p in (REPO / "models").glob("*.yaml"))
    rules = [r["Properties"] for r in resources.values()
             if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in r["Properties"]]  # not the failed-job rule
    assert models and sorted(json.loads(r["Targets"][0]["Input"])["Parameters"]["definition"] for r in rules) == [
        f"models/{m}.yaml" for m in models]  # every shipped model is scheduled, nothing else
    assert all(r["Targets"][0]["Arn"] == {"Ref": "JobQueue"} for r in rules)
    job = resources["JobDefinition"]["Properties"]
    dockerfile = (REPO / "handlers" / "ml" / "Dockerfile.training").read_text()
    assert 'ENTRYPOINT ["python", "-m", "handlers.ml.batch_job"]' in dockerfile
    assert job["ContainerProperties"]["Command"] == ["--definition", "Ref::definition"]  # the entry point's args
    assert job["ContainerProperties"]["NetworkConfiguration"] == {"AssignPublicIp": "DISABLED"}
    repository = resources["Repository"]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE" and repository["ImageScanningConfiguration"]["ScanOnPush"]
    writes = [s for s in resources["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
              if "s3:PutObject" in as_list(s["Action"])]
    assert [s["Resource"] for s in writes] == [placeholder("ModelsBucketArn", "DEV") + "/models/*"]


@pytest.mark.parametrize("stage", STAGES)
def test_upstream_data_alerts_run_on_a_schedule_from_the_statistics_package(rendered, stage):
    resources = template(rendered, stage, "statistics")["Resources"]
    function = resources["UpstreamFunction"]["Properties"]
    assert function["Handler"] == "handlers.statistics.lambda_upstream.handler"
    assert function["Code"] == resources["StatisticsFunction"]["Properties"]["Code"]  # one package, two handlers
    schedule = resources["UpstreamSchedule"]["Properties"]
    assert schedule["ScheduleExpression"].startswith("rate(") and schedule["Targets"][0]["Arn"] == {
        "Fn::GetAtt": ["UpstreamFunction", "Arn"]}
    actions = {a for _, s in statements({"Resources": {"UpstreamRole": resources["UpstreamRole"]}})
               for a in as_list(s["Action"])}
    assert not any(a.startswith(("kinesis:", "s3:")) for a in actions)  # reads no stream, no bucket


def test_search_indexer_reads_the_stream_per_record_and_writes_only_its_domain(rendered):
    from deploy.humilis_run import placeholder

    resources = template(rendered, "DEV", "search-indexer")["Resources"]
    mapping = resources["IndexerEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BisectBatchOnFunctionError"]
    assert mapping["EventSourceArn"] == placeholder("StreamArn", "DEV")
    function = resources["IndexerFunction"]["Properties"]
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    assert function["Code"]["S3Key"].endswith(manifest["indexer"]["file"])
    assert function["Handler"] == "handlers.search.lambda_indexer.handler"
    assert function["Environment"]["Variables"]["LETGO_OPENSEARCH_URL"] == \
        "https://" + placeholder("DomainEndpoint", "DEV")
    policy = {s["Sid"]: s for s in resources["IndexerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert policy["WriteTheSearchDomain"]["Resource"] == placeholder("DomainArn", "DEV") + "/*"


def test_model_serving_is_iam_only_and_the_validator_follows_every_pointer_move(rendered):
    from deploy.humilis_run import placeholder

    serving = template(rendered, "DEV", "model-serving")["Resources"]
    routes = [r["Properties"] for r in serving.values() if r["Type"] == "AWS::ApiGatewayV2::Route"]
    assert routes and all(r["AuthorizationType"] == "AWS_IAM" for r in routes)  # not public
    options = {(o["Namespace"], o["OptionName"]): o["Value"]
               for o in serving["Environment"]["Properties"]["OptionSettings"]}
    bucket = placeholder("ModelsBucketArn", "DEV").split(":")[-1]
    assert options[("aws:elasticbeanstalk:application:environment", "MODELS_BUCKET")] == bucket
    assert "Docker" in serving["Environment"]["Properties"]["SolutionStackName"]
    reads = {s["Sid"]: s for s in serving["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert reads["ReadObjects"]["Action"] == ["s3:GetObject"]  # serving never writes the store

    validator = template(rendered, "DEV", "model-validator")["Resources"]
    rule = validator["PointerMovedRule"]["Properties"]["EventPattern"]
    assert rule["detail"] == {"bucket": {"name": [bucket]}, "object": {"key": [{"wildcard": "models/*/current.json"}]}}
    function = validator["ValidatorFunction"]["Properties"]
    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    assert function["Code"]["S3Key"].endswith(manifest["validator"]["file"])
    assert function["Handler"] == "handlers.ml.serving.validator.handler"
    assert function["Environment"]["Variables"]["SERVING_IAM_AUTH"] == "1"
    invoke = {s["Sid"]: s
              for s in validator["ValidatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]}
    assert invoke["CallTheServingApi"]["Resource"]["Fn::Sub"].endswith(":" + placeholder("ApiId", "DEV") + "/*")


def test_validator_package_imports_without_the_ml_libraries():
    """The validator zip carries no numpy/scikit-learn (python3.11 Lambda cannot run current numpy wheels)."""
    code = ("import sys, handlers.ml.serving.validator; "
            "print(sorted(m for m in ('numpy', 'sklearn', 'scipy', 'skops') if m in sys.modules))")
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_search_replicas_follow_zone_awareness(rendered):
    for stage, replicas in (("DEV", "0"), ("PROD", "1")):
        indexer = template(rendered, stage, "search-indexer")["Resources"]["IndexerFunction"]["Properties"]
        assert indexer["Environment"]["Variables"]["LETGO_OPENSEARCH_REPLICAS"] == replicas
        api = template(rendered, stage, "search-api")["Resources"]["Environment"]["Properties"]["OptionSettings"]
        assert {o["OptionName"]: o["Value"] for o in api}["LETGO_OPENSEARCH_REPLICAS"] == replicas


def test_every_function_and_service_gets_the_sentry_secret_and_may_read_it(tmp_path):
    import yaml

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:letgo/sentry-AbCdEf"
    parameters = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    parameters["DEV"]["sentry_dsn_secret_arn"] = arn
    changed = tmp_path / "parameters.yaml"
    changed.write_text(yaml.safe_dump(parameters))
    humilis("render", "--stage", "DEV", "--out", str(tmp_path / "out"), "--parameters", str(changed))
    seen = []
    for path in sorted((tmp_path / "out" / "DEV").glob("*.json")):
        resources = load(path)["Resources"]
        for name, resource in resources.items():
            props = resource["Properties"]
            if resource["Type"] == "AWS::Lambda::Function":
                env = props.get("Environment", {}).get("Variables", {})
            elif resource["Type"] == "AWS::ElasticBeanstalk::Environment":
                env = {o["OptionName"]: o["Value"] for o in props["OptionSettings"]}
            elif resource["Type"] == "AWS::Batch::JobDefinition":
                env = {e["Name"]: e["Value"] for e in props["ContainerProperties"]["Environment"]}
            else:
                continue
            if "SENTRY_DSN_SECRET_ARN" in env:
                assert env["SENTRY_DSN_SECRET_ARN"] == arn
                seen.append(f"{path.stem}/{name}")
        if any(item.startswith(path.stem + "/") for item in seen):  # whoever gets the ARN may read that secret
            readers = [s for _, s in statements(load(path)) if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
            assert any(arn in as_list(s["Resource"]) for s in readers), path.stem
    assert {"kinesis/ConsumerFunction", "statistics/UpstreamFunction", "search-indexer/IndexerFunction",
            "search-api/Environment", "model-serving/Environment", "model-validator/ValidatorFunction",
            "batch/JobDefinition"} <= set(seen), seen


@pytest.mark.parametrize("stage", STAGES)
def test_every_stream_mapping_waits_out_an_outage_and_queues_only_while_the_stream_still_has_the_records(
        rendered, stage):
    """Nothing lost: no retry limit, a maximum record age below the stream's retention (so `letgo recover` can
    still re-read a queued batch from the stream), and the function has time to wait inside an invocation."""
    retention = template(rendered, stage, "kinesis")["Resources"]
    [stream] = [r["Properties"] for r in retention.values() if r["Type"] == "AWS::Kinesis::Stream"]
    retention_seconds = stream["RetentionPeriodHours"] * 3600
    layers = ["kinesis", "statistics"] + ([] if "search-indexer" in DISABLED.get(stage, set()) else ["search-indexer"])
    for layer in layers:
        resources = template(rendered, stage, layer)["Resources"]
        for mapping in (r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"):
            assert mapping["MaximumRetryAttempts"] == -1, layer
            age = mapping["MaximumRecordAgeInSeconds"]
            replaying = layer == "statistics" and age == -1  # a statistics replay lifts the age limit on purpose
            assert replaying or 3600 <= age <= retention_seconds - 86400, (layer, age, retention_seconds)
            assert mapping["DestinationConfig"]["OnFailure"]["Destination"], layer
    [consumer] = [r["Properties"] for r in template(rendered, stage, "kinesis")["Resources"].values()
                  if r["Type"] == "AWS::Lambda::Function"]
    from handlers.core.runtime import SAFETY_MARGIN_SECONDS

    assert consumer["Timeout"] >= 2 * SAFETY_MARGIN_SECONDS  # room to wait, and room to finish a slow attempt


@pytest.mark.parametrize("package, module", [("warehouse", "handlers.warehouse.loader"),
                                             ("authorizer", "handlers.collector.authorizer")])
def test_lean_packages_import_from_their_own_zip(package, module, tmp_path):
    """The packages without wheels (the runtime's boto3 only) carry every module their entry point imports:
    the zip alone comes first on the path, so a module it lacks cannot be found in the checkout instead."""
    import zipfile

    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    with zipfile.ZipFile(REPO / "dist" / manifest[package]["file"]) as archive:
        archive.extractall(tmp_path)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import {module}; "
            f"print({module}.__file__.startswith({str(tmp_path)!r}))")
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr[-2000:]
