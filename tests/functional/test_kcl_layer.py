"""The KCL fleet as a layer (issue 12, item 6): kcl-consumer, chosen per stage with `consumer: lambda | kcl`.

Rendered with the real humilis for DEV and PROD with ``consumer: kcl`` (and without, for the other half of "never
both"); cfn-lint and checkov on what the choice changes (the kcl-consumer and kinesis templates); the wiring read
from the templates. The stack itself is created by the real humilis on moto server (LOCAL with consumer: kcl):
the KCL tables, the role, the instance profile, the launch template and the mixed-instances group exist there.
moto's CloudFormation (5.2) leaves out, and the render alone shows: the group's CapacityRebalance (reported false)
and MetricsCollection (no enabled metrics); the tables' SSESpecification (moto reads the API's `Enabled`, not
CloudFormation's `SSEEnabled`, so no SSEDescription) and PointInTimeRecoverySpecification (reported DISABLED);
the alarms (skipped).
The image (deploy/kcl-consumer/) cannot be built here (amazon-kclpy's build downloads the KCL jars): its
Dockerfile is read as text, and its entry point runs with a stand-in for amazon-kclpy's helper.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_kit import REAL_VALUES, checkov, REPO, as_list, client, humilis, load, moto_server, \
    parameters_file, render

pytestmark = pytest.mark.functional
STAGES = ("DEV", "PROD")
KCL = {stage: {"consumer": "kcl"} for stage in (*STAGES, "LOCAL")}
KCL_DIR = REPO / "deploy" / "kcl-consumer"


def placeholder(output: str, stage: str) -> str:
    from deploy.humilis_run import placeholder as rendered_as

    return rendered_as(output, stage)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{(stage, consumer): folder of that stage's templates}"""
    out = {}
    for consumer in ("kcl", "lambda"):
        folder = tmp_path_factory.mktemp(consumer)
        for stage in STAGES:
            out[stage, consumer] = render(stage, folder / "rendered", KCL if consumer == "kcl" else None)
    return out


def kcl(rendered, stage):
    return load(rendered[stage, "kcl"] / "kcl-consumer.json")["Resources"]


def of_type(resources, kind):
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def stage_values(stage):
    values = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    return {**values["_default"], **values.get(stage, {})}


# -- lambda | kcl, never both -------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_runs_either_the_consumer_mapping_or_the_kcl_fleet(rendered, stage):
    assert stage_values(stage)["consumer"] == "lambda"  # the default
    lambda_kinesis = load(rendered[stage, "lambda"] / "kinesis.json")
    assert not (rendered[stage, "lambda"] / "kcl-consumer.json").exists()
    assert len(of_type(lambda_kinesis["Resources"], "AWS::Lambda::EventSourceMapping")) == 1
    assert "EventSourceMappingId" in lambda_kinesis["Outputs"]

    kcl_kinesis = load(rendered[stage, "kcl"] / "kinesis.json")
    assert (rendered[stage, "kcl"] / "kcl-consumer.json").exists()
    assert of_type(kcl_kinesis["Resources"], "AWS::Lambda::EventSourceMapping") == {}
    assert "EventSourceMappingId" not in kcl_kinesis["Outputs"]
    # nothing else of the stage changes with the choice
    others = {p.name for p in rendered[stage, "lambda"].glob("*.json")} - {"kinesis.json"}
    assert others == {p.name for p in rendered[stage, "kcl"].glob("*.json")} - {"kinesis.json", "kcl-consumer.json"}
    for name in others:
        assert load(rendered[stage, "lambda"] / name) == load(rendered[stage, "kcl"] / name), name


def test_a_consumer_other_than_lambda_or_kcl_stops_the_render_naming_it(tmp_path):
    with pytest.raises(AssertionError, match="consumer must be lambda or kcl, not kinesis"):
        render("DEV", tmp_path / "rendered", {"DEV": {"consumer": "kinesis"}})


def test_the_layer_type_is_registered_and_ships_in_the_wheel_like_the_others(tmp_path):
    import tomllib
    import zipfile

    from letgo.ops import humilis_layers

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["humilis.layers"]
    assert declared["letgo-kcl-consumer"] == "letgo.ops.humilis_layers:kcl_consumer"
    assert Path(humilis_layers.kcl_consumer()) == REPO / "layers" / "kcl-consumer"
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=600)
    [wheel] = tmp_path.glob("letgo_data_platform-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "letgo-kcl-consumer = letgo.ops.humilis_layers:kcl_consumer" in archive.read(entry_points).decode()
    folder = "letgo/layers/kcl-consumer/"
    assert {folder + "meta.yaml", folder + "resources.yaml.j2", folder + "outputs.yaml.j2"} <= names
    assert "handlers/tracking/kcl_properties.py" in names  # the image's properties generator ships with the handlers
    meta = yaml.safe_load((REPO / "layers" / "kcl-consumer" / "meta.yaml").read_text())["meta"]["parameters"]
    assert all(p.get("description") and "value" in p for p in meta.values()), "every parameter described, defaulted"


# -- linters ------------------------------------------------------------------------------------------------
def test_cfn_lint_reports_nothing(rendered):
    files = [str(rendered[stage, "kcl"] / name) for stage in STAGES for name in ("kcl-consumer.json", "kinesis.json")]
    done = subprocess.run([str(REPO / ".venv" / "bin" / "cfn-lint"), *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_fails_nothing(rendered, tmp_path):
    for stage in STAGES:
        for name in ("kcl-consumer.json", "kinesis.json"):
            shutil.copy(rendered[stage, "kcl"] / name, tmp_path / f"{stage}-{name}")
    found = checkov(tmp_path)
    assert found.failed == []
    assert found.passed > 80
    assert found.unjustified_skips() == []


# -- the fleet ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", STAGES)
def test_the_group_is_all_spot_over_several_types_with_capacity_rebalancing_in_private_subnets(rendered, stage):
    [(_, group)] = of_type(kcl(rendered, stage), "AWS::AutoScaling::AutoScalingGroup").items()
    props = group["Properties"]
    distribution = props["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 0 and distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] in ("price-capacity-optimized", "capacity-optimized")
    types = [o["InstanceType"] for o in props["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]]
    assert len(set(types)) >= 3 and types == stage_values(stage)["kcl_instance_types"]
    assert props["CapacityRebalance"] is True
    assert props["VPCZoneIdentifier"] == placeholder("PrivateSubnetIds", stage).split(",")
    assert int(props["MinSize"]) == stage_values(stage)["kcl_min_instances"] >= 2
    assert int(props["MaxSize"]) >= int(props["MinSize"])
    spec = props["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec == {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}}
    assert {"GroupDesiredCapacity", "GroupInServiceInstances"} <= set(props["MetricsCollection"][0]["Metrics"])
    assert group["UpdatePolicy"]["AutoScalingRollingUpdate"]["MaxBatchSize"] == 1


@pytest.mark.parametrize("stage", STAGES)
def test_instances_are_imdsv2_only_encrypted_without_public_ip_or_any_ingress(rendered, stage):
    resources = kcl(rendered, stage)
    data = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # so the container shares the host's network
    assert "--network host" in user_data(resources)
    [root] = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["VolumeType"] == "gp3"
    [interface] = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False and "SubnetId" not in interface
    assert interface["Groups"] == [{"Fn::GetAtt": ["SecurityGroup", "GroupId"]},
                                   placeholder("LambdaSecurityGroupId", stage)]  # the group the database admits
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": ["InstanceProfile", "Arn"]}}
    assert "InstanceMarketOptions" not in data  # spot is the group's (mixed instances), not the template's
    [(_, group)] = of_type(resources, "AWS::EC2::SecurityGroup").items()
    assert "SecurityGroupIngress" not in group["Properties"]
    assert not of_type(resources, "AWS::EC2::SecurityGroupIngress")
    assert [(r["FromPort"], r["ToPort"]) for r in group["Properties"]["SecurityGroupEgress"]] == [(443, 443)]


@pytest.mark.parametrize("stage", STAGES)
def test_the_kcl_tables_are_named_after_the_application_encrypted_and_recoverable(rendered, stage):
    resources = kcl(rendered, stage)
    tables = {r["Properties"]["TableName"]: (n, r) for n, r in of_type(resources, "AWS::DynamoDB::Table").items()}
    application = f"letgo-kcl-consumer-{stage.lower()}"
    assert set(tables) == {application, f"{application}-CoordinatorState", f"{application}-WorkerMetricStats"}
    for _, table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                             "KMSMasterKeyId": placeholder("DataKeyArn", stage)}
    _, lease = tables[application]
    assert lease["Properties"]["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    [index] = lease["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "LeaseOwnerToLeaseKeyIndex"
    assert lease["DeletionPolicy"] == ("Retain" if stage == "PROD" else "Delete")  # the checkpoints


@pytest.mark.parametrize("stage", STAGES)
def test_the_instance_role_reaches_only_the_stages_stream_tables_sinks_and_secrets(rendered, stage):
    resources = kcl(rendered, stage)
    role = resources["InstanceRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]
    allowed = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert not [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] != "Allow"]
    actions = {a for s in allowed for a in as_list(s["Action"])}
    assert not any("*" in a for a in actions), actions

    def resources_of(action):
        return [r for s in allowed if action in as_list(s["Action"]) for r in as_list(s["Resource"])]

    # "*" only where the API has no resource-level permission, and PutMetricData only in the KCL's namespace
    starred = [s for s in allowed if "*" in as_list(s["Resource"])]
    assert sorted(a for s in starred for a in as_list(s["Action"])) == [
        "cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"]
    [metrics] = [s for s in starred if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": f"letgo-kcl-consumer-{stage.lower()}"}}

    assert resources_of("kinesis:GetRecords") == [placeholder("StreamArn", stage)]
    assert not {"kinesis:SubscribeToShard", "kinesis:RegisterStreamConsumer", "kinesis:PutRecord",
                "kinesis:PutRecords"} & actions
    tables = [{"Fn::GetAtt": [name, "Arn"]}
              for name in ("LeaseTable", "CoordinatorStateTable", "WorkerMetricStatsTable")]
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                   "dynamodb:Scan", "dynamodb:DescribeTable"):
        assert resources_of(action) == tables, action
    assert resources_of("dynamodb:Query") == [{"Fn::Sub": "${LeaseTable.Arn}/index/*"}]
    assert sorted(resources_of("s3:PutObject")) == sorted(
        [placeholder("RawBucketArn", stage) + "/*", placeholder("QuarantineBucketArn", stage) + "/*"])
    assert not {"s3:GetObject", "s3:DeleteObject"} & actions  # the consumer only writes its archives
    assert resources_of("firehose:PutRecordBatch") == [placeholder("DeliveryStreamArn", stage)]
    secrets = set(resources_of("secretsmanager:GetSecretValue"))
    env = container_env(resources)
    assert secrets == {arn for arn in (env["DATABASE_SECRET_ARN"], env["SENTRY_DSN_SECRET_ARN"]) if arn}
    assert env["SENTRY_DSN_SECRET_ARN"] == (REAL_VALUES["sentry_dsn_secret_arn"] if stage == "PROD" else "")
    lambda_role = load(rendered[stage, "lambda"] / "kinesis.json")["Resources"]["ConsumerRole"]["Properties"]
    lambda_allowed = [s for p in lambda_role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for action in ("secretsmanager:GetSecretValue", "rds-db:connect"):  # the database login as the Lambda's
        assert sorted(map(str, resources_of(action))) == sorted(
            str(r) for s in lambda_allowed if action in as_list(s["Action"]) for r in as_list(s["Resource"])), action
    [key] = [s for s in allowed if "kms:Decrypt" in as_list(s["Action"])]
    assert key["Resource"] == placeholder("DataKeyArn", stage) and set(key["Action"]) == {"kms:Decrypt",
                                                                                      "kms:GenerateDataKey"}
    via = [v["Fn::Sub"].split(".")[0] for v in key["Condition"]["StringEquals"]["kms:ViaService"]]
    assert set(via) == {"s3", "kinesis", "secretsmanager", "dynamodb", "ecr"}
    assert resources_of("ecr:BatchGetImage") == [{"Fn::GetAtt": ["Repository", "Arn"]}]
    assert resources_of("logs:PutLogEvents") == [{"Fn::GetAtt": ["LogGroup", "Arn"]}]
    assert not [a for a in actions if a.startswith(("iam:", "sts:", "ec2:", "ssm:"))]


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_on_iterator_age_and_instances_notify_the_alerts_topic(rendered, stage):
    alarms = of_type(kcl(rendered, stage), "AWS::CloudWatch::Alarm")
    topic = placeholder("AlertsTopicArn", stage)
    assert alarms and all(a["Properties"]["AlarmActions"] == [topic] for a in alarms.values())
    age = alarms["IteratorAgeAlarm"]["Properties"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")
    assert age["Dimensions"] == [{"Name": "StreamName", "Value": placeholder("StreamName", stage)}]
    assert age["Threshold"] == stage_values(stage)["iterator_age_alarm_ms"]
    missing = {m["Id"]: m for m in alarms["MissingInstancesAlarm"]["Properties"]["Metrics"]}
    assert missing["missing"]["Expression"] == "desired - inservice"
    assert missing["inservice"]["MetricStat"]["Metric"]["MetricName"] == "GroupInServiceInstances"
    assert missing["desired"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": {"Ref": "AutoScalingGroup"}}]
    status = alarms["StatusCheckAlarm"]["Properties"]
    assert status["MetricName"] == "StatusCheckFailed" and status["Dimensions"][0]["Value"] == {
        "Ref": "AutoScalingGroup"}


# -- the image: user data -> consumer.properties -> the daemon --------------------------------------------
def user_data(resources) -> str:
    return resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]


def container_env(resources, region="eu-west-1") -> dict[str, str]:
    """The environment file the user data writes for the container, with CloudFormation's ${AWS::Region}."""
    text = user_data(resources)
    block = text.split("cat > /etc/letgo/kcl-consumer.env <<'ENV'\n", 1)[1].split("\nENV\n", 1)[0]
    return dict(line.split("=", 1) for line in block.replace("${AWS::Region}", region).splitlines())


@pytest.mark.parametrize("stage", STAGES)
def test_the_container_gets_the_stage_and_generates_consumer_properties_from_it(rendered, stage, tmp_path):
    from handlers.tracking import kcl_properties

    resources = kcl(rendered, stage)
    env = container_env(resources)
    values = kcl_properties.from_env(env)
    assert values["streamName"] == placeholder("StreamName", stage)
    assert values["applicationName"] == resources["LeaseTable"]["Properties"]["TableName"]
    assert values["maxRecords"] == str(stage_values(stage)["batch_size"])  # as many as the Lambda mapping's batch
    assert values["initialPositionInStream"] == "TRIM_HORIZON" and values["regionName"] == "eu-west-1"
    # the consumer's own configuration, as the Lambda's
    from handlers.core.config import Env
    from handlers.tracking.consumer import ConsumerConfig

    config = ConsumerConfig.from_env(Env(env))
    assert config.stage == stage.lower()
    assert config.raw_bucket == placeholder("RawBucketName", stage)
    assert config.firehose_stream == placeholder("DeliveryStreamName", stage)
    assert config.database is not None  # DEV and PROD have a database: the consumer writes PostgreSQL
    # the database login, the secrets and the sinks exactly as the Lambda consumer of the same stage has them
    lambda_env = next(iter(of_type(load(rendered[stage, "lambda"] / "kinesis.json")["Resources"],
                                   "AWS::Lambda::Function").values()))["Properties"]["Environment"]["Variables"]
    shared = {"RAW_BUCKET", "QUARANTINE_BUCKET", "DATABASE_SECRET_ARN", "DATABASE_IAM_USER", "DATABASE_HOST",
              "DATABASE_PORT", "DATABASE_NAME", "SENTRY_DSN_SECRET_ARN", "STAGE"}
    for name in shared & set(lambda_env):
        assert env.get(name, "") == lambda_env[name], name
    assert not {n for n in lambda_env if n.startswith("DATABASE_")} - set(env), "a database setting the KCL lacks"
    # ARNs and names only: no secret value, and the image is this layer's repository at the stage's tag
    assert all(not re.search(r"(?i)(password|dsn)=.*://", f"{k}={v}") for k, v in env.items())
    assert f"${{Repository.RepositoryUri}}:{stage_values(stage)['kcl_image_tag']}" in user_data(resources)
    assert "systemctl enable --now letgo-kcl-consumer.service" in user_data(resources)


def test_the_dockerfile_installs_the_daemon_and_runs_the_generated_properties():
    dockerfile = (KCL_DIR / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert stages[-1] == "python:3.11-slim"  # what runs
    assert re.search(r"apt-get install .*default-jre-headless", dockerfile.split("FROM python:3.11-slim\n")[-1])
    assert re.search(r'pip wheel .*"amazon-kclpy==\$\{KCLPY_VERSION\}"', dockerfile)
    assert "COPY --from=kclpy /wheels /wheels" in dockerfile and "/wheels/*.whl" in dockerfile
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):  # everything copied exists
        assert (REPO / source).exists(), source
    [entry] = re.findall(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.M)
    assert f"COPY deploy/kcl-consumer/entrypoint.sh {entry}" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    entrypoint = (KCL_DIR / "entrypoint.sh").read_text()
    assert "python -m handlers.tracking.kcl_properties --out \"$KCL_PROPERTIES\"" in entrypoint
    assert "amazon_kclpy_helper.py --print_command --java" in entrypoint
    assert subprocess.run(["sh", "-n", str(KCL_DIR / "entrypoint.sh")]).returncode == 0


def test_the_entry_point_writes_the_properties_then_execs_the_daemons_command(tmp_path):
    """amazon-kclpy's helper cannot be installed here: a stand-in prints a command, as the real one prints the
    daemon's `java -cp ... MultiLangDaemon ... consumer.properties`; the entry point must exec exactly that."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "amazon_kclpy_helper.py"
    helper.write_text("#!/bin/sh\n"
                      "[ \"$1 $2 $4 $5\" = \"--print_command --java --properties $KCL_PROPERTIES\" ] || exit 9\n"
                      "echo cat $5\n")  # like the real one: words without spaces, the properties' path last
    helper.chmod(0o755)
    (bin_dir / "java").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "java").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    properties = tmp_path / "consumer.properties"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "APP_DIR": str(REPO), "KCL_PROPERTIES": str(properties),
           "KCL_STREAM_NAME": "letgo-events-dev", "KCL_APPLICATION_NAME": "letgo-kcl-consumer-dev",
           "AWS_REGION": "eu-west-1", "KCL_MAX_RECORDS": "500"}
    done = subprocess.run(["sh", str(KCL_DIR / "entrypoint.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "executableName = python -m handlers.tracking.kcl_consumer" in done.stdout  # the exec'd command ran
    assert "maxRecords = 500" in properties.read_text()
    # a stage value the daemon cannot run with stops the container before the daemon starts
    done = subprocess.run(["sh", str(KCL_DIR / "entrypoint.sh")], capture_output=True, text=True,
                          env={**env, "KCL_MAX_RECORDS": ""}, timeout=60)
    assert done.returncode == 2 and "KCL_MAX_RECORDS" in done.stderr and "starting" not in done.stderr


# -- on moto server --------------------------------------------------------------------------------------
def test_humilis_creates_the_kcl_stack_on_moto_and_switches_back_only_without_it(tmp_path):
    """LOCAL with consumer: kcl, created by the real humilis on moto server: the layer's stack and what moto models
    of it (tables, role, profile, launch template, the mixed-instances group), and no consumer mapping. Then back to
    consumer: lambda: refused while the fleet's stack exists, done once it is deleted."""
    parameters = parameters_file(tmp_path / "parameters.yaml", {"LOCAL": {"consumer": "kcl"}})
    with moto_server(tmp_path) as aws:
        humilis("create", "--stage", "LOCAL", "--parameters", str(parameters), "--output",
                str(tmp_path / "outputs.yaml"), env=aws)
        outputs = yaml.safe_load((tmp_path / "outputs.yaml").read_text())
        layer = outputs["kcl-consumer"]
        application = "letgo-kcl-consumer-local"
        assert layer["LeaseTableName"] == layer["ApplicationName"] == application

        dynamodb = client("dynamodb", aws)
        for name in (application, f"{application}-CoordinatorState", f"{application}-WorkerMetricStats"):
            table = dynamodb.describe_table(TableName=name)["Table"]
            assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", name
            assert table["TableStatus"] == "ACTIVE", name
        lease = dynamodb.describe_table(TableName=application)["Table"]
        assert [i["IndexName"] for i in lease["GlobalSecondaryIndexes"]] == ["LeaseOwnerToLeaseKeyIndex"]

        iam = client("iam", aws)
        role_name = layer["InstanceRoleArn"].rsplit("/", 1)[1]
        [policy_name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # moto keeps a policy CloudFormation gave it as the dict's repr
            import ast

            document = ast.literal_eval(document)
        reads = [s for s in document["Statement"] if "kinesis:GetRecords" in as_list(s["Action"])]
        assert [s["Resource"] for s in reads] == [outputs["kinesis"]["StreamArn"]]
        table_arns = {r for s in document["Statement"] if "dynamodb:UpdateItem" in as_list(s["Action"])
                      for r in as_list(s["Resource"])}
        assert lease["TableArn"] in table_arns and len(table_arns) == 3
        profiles = iam.list_instance_profiles_for_role(RoleName=role_name)["InstanceProfiles"]
        assert len(profiles) == 1

        ec2 = client("ec2", aws)
        [version] = ec2.describe_launch_template_versions(LaunchTemplateId=layer["LaunchTemplateId"])[
            "LaunchTemplateVersions"]
        data = version["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert data["IamInstanceProfile"]["Arn"] == profiles[0]["Arn"]
        assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
        # the user data as CloudFormation resolved it: the deployed stage's names, and consumer.properties from them
        import base64

        from handlers.tracking import kcl_properties

        script = base64.b64decode(data["UserData"]).decode()
        assert f"docker pull {layer['RepositoryUri']}:latest-release" in script
        env = container_env({"LaunchTemplate": {"Properties": {"LaunchTemplateData": {
            "UserData": {"Fn::Base64": {"Fn::Sub": script}}}}}}, region=aws["AWS_REGION"])
        properties = kcl_properties.from_env(env)
        assert properties["streamName"] == outputs["kinesis"]["StreamName"]
        assert properties["applicationName"] == application and properties["regionName"] == aws["AWS_REGION"]
        assert env["RAW_BUCKET"] == outputs["storage"]["RawBucketName"]
        assert env["FIREHOSE_STREAM"] == outputs["kinesis"]["DeliveryStreamName"]

        [group] = client("autoscaling", aws).describe_auto_scaling_groups(
            AutoScalingGroupNames=[layer["AutoScalingGroupName"]])["AutoScalingGroups"]
        policy = group["MixedInstancesPolicy"]
        assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateId"] == layer["LaunchTemplateId"]
        assert len(policy["LaunchTemplate"]["Overrides"]) >= 3
        assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 0
        subnets = set(outputs["vpc"]["PrivateSubnetIds"].split(","))
        assert set(group["VPCZoneIdentifier"].split(",")) == subnets

        # the stage's consumer function reads nothing: the KCL fleet does
        lambda_ = client("lambda", aws)
        function = outputs["kinesis"]["ConsumerFunctionName"]
        assert lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"] == []

        # switching back to lambda while the fleet's stack exists (humilis never deletes a layer the environment no
        # longer lists) would run both: the deploy stops before CloudFormation, naming the stack to delete
        back = parameters_file(tmp_path / "lambda.yaml")
        refused = humilis("update", "--stage", "LOCAL", "--parameters", str(back), env=aws, check=False)
        assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert "letgo-kcl-consumer-LOCAL" in refused.stderr and "never runs both" in refused.stderr
        assert lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"] == []
        # with the fleet gone, the same deploy gives the consumer function its mapping back
        cloudformation = client("cloudformation", aws)
        cloudformation.delete_stack(StackName="letgo-kcl-consumer-LOCAL")
        cloudformation.get_waiter("stack_delete_complete").wait(StackName="letgo-kcl-consumer-LOCAL",
                                                                WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        humilis("update", "--stage", "LOCAL", "--parameters", str(back), env=aws)
        [mapping] = lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        assert mapping["EventSourceArn"] == outputs["kinesis"]["StreamArn"]
