"""Run humilis for one stage: render, create, update, preview (change sets) and delete.

Runs in humilis's own virtualenv (``.venv-humilis``: humilis pins PyYAML ≤ 5.2 and click < 8). What it adds
to plain ``humilis``:

* an isolated ``HOME`` and working folder with a generated ``.humilis.ini`` (importing humilis writes
  ini files into ``HOME``), and the deploy bucket humilis uploads templates to, bootstrapped if missing
  (private, encrypted, versioned — like ``cdk bootstrap``);
* ``render``: every layer compiled for a stage without AWS — STS and cross-layer references are stubbed with
  well-formed placeholders, ``$lambda`` points at the packaged zip without uploading it;
* ``preview``: a change set per layer, printed, then deleted — humilis itself has no preview;
* the guards of ``deploy/stage_guards.py``: termination protection set on the stateful layers' stacks after a
  deploy, ``delete`` refused on a protected stage without ``--confirm letgo-<STAGE>``, and a search domain's
  service-linked role checked before anything is deployed;
* ``render`` still checks every ``$letgo_artefact`` against ``dist/manifest.json`` (letgo/ops/humilis_artefacts.py):
  a package that was not built fails the render with its name, as it fails a deploy;
* against moto (``AWS_ENDPOINT_URL`` set) humilis's 5-second polling is shortened.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT = REPO / "environments" / "letgo.yaml.j2"
PARAMETERS = REPO / "environments" / "parameters.yaml"
ENV_NAME = "letgo"
FAKE_ACCOUNT = "123456789012"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"


def deploy_bucket(account: str, stage: str) -> str:
    return f"letgo-deploy-{account}-{region()}-{stage.lower()}"


def prepare(stage: str, account: str) -> None:
    """Isolated HOME + working folder with .humilis.ini; must run before humilis is imported."""
    work = REPO / ".local" / "humilis" / stage.lower()
    (work / "home").mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(work / "home")
    (work / ".humilis.ini").write_text(
        "[profile:default]\naws_profile = default\n"
        f"aws_region = {region()}\nbucket = {deploy_bucket(account, stage)}\ns3prefix = humilis/\n")
    os.chdir(work)


def caller_account() -> str:
    import boto3

    return boto3.client("sts", region_name=region()).get_caller_identity()["Account"]


def bootstrap_bucket(name: str) -> None:
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", region_name=region())
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError:
        pass
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region()})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    print(f"bootstrapped deploy bucket s3://{name}")


# -- placeholders for rendering without AWS ------------------------------------------------------------
PLACEHOLDERS = [  # (suffix of an output name, value); the first match wins
    ("BucketName", "letgo-placeholder-{stage}"),
    ("BucketArn", "arn:aws:s3:::letgo-placeholder-{stage}"),
    ("StreamArn", "arn:aws:kinesis:{region}:{account}:stream/letgo-placeholder-{stage}"),
    ("StreamName", "letgo-placeholder-{stage}"),
    ("KeyArn", "arn:aws:kms:{region}:{account}:key/00000000-0000-4000-8000-000000000000"),
    ("SecretArn", "arn:aws:secretsmanager:{region}:{account}:secret:letgo-placeholder-AbCdEf"),
    ("SubnetIds", "subnet-0123456789abcdef0,subnet-0fedcba9876543210"),
    ("SecurityGroupId", "sg-0123456789abcdef0"),
    ("VpcId", "vpc-0123456789abcdef0"),
    ("VpcCidr", "10.40.0.0/16"),
    ("TopicArn", "arn:aws:sns:{region}:{account}:letgo-placeholder-{stage}"),
    ("QueueArn", "arn:aws:sqs:{region}:{account}:letgo-placeholder-{stage}"),
    ("DomainArn", "arn:aws:es:{region}:{account}:domain/letgo-placeholder-{stage}"),
    ("Endpoint", "placeholder.{region}.example.internal"),
    ("Port", "5432"),
    ("Arn", "arn:aws:iam::{account}:role/letgo-placeholder-{stage}"),
]


def placeholder(output_name: str, stage: str) -> str:
    for suffix, value in PLACEHOLDERS:
        if output_name.endswith(suffix):
            return value.format(stage=stage.lower(), region=region(), account=FAKE_ACCOUNT)
    return f"placeholder-{output_name}"


def stub_for_render(stage: str) -> None:
    """No AWS: a fixed account, references resolved to placeholders, zips referenced but not uploaded."""
    import humilis.environment
    import humilis.layer
    from humilis.config import config

    from letgo.ops import humilis_artefacts

    class FakeSts:
        def get_caller_identity(self) -> dict:
            return {"Account": FAKE_ACCOUNT}

    class FakeBoto3:
        @staticmethod
        def client(service: str, *args, **kwargs):
            assert service == "sts", service
            return FakeSts()

    humilis.environment.boto3 = FakeBoto3
    humilis.layer.boto3 = FakeBoto3

    def output(layer, cfg, layer_name=None, output_name=None, **_):
        return placeholder(output_name, stage)

    def s3_ref(layer, path: str) -> dict:  # where humilis's uploader would put it
        return {"s3bucket": deploy_bucket(FAKE_ACCOUNT, stage),
                "s3key": f"humilis/{ENV_NAME}/{stage.upper()}/{layer.name}/{os.path.basename(path)}"}

    def lambda_ref(layer, cfg, path=None, **_):
        return s3_ref(layer, path or "missing.zip")

    def artefact_ref(layer, cfg, name=None, dist=None):  # checked as on a deploy, only not uploaded
        return s3_ref(layer, str(humilis_artefacts.find(name, layer.env_basedir, dist)))

    config.reference_parsers.update({"output": output, "layer_output": output, "lambda": lambda_ref,
                                     "letgo_artefact": artefact_ref})


def speed_up_polling() -> None:
    import humilis.layer

    class QuickTime:
        sleep = staticmethod(lambda _seconds: time.sleep(0.2))
        time = staticmethod(time.time)

    humilis.layer.time = QuickTime


def environment(stage: str, parameters: Path = PARAMETERS):
    from humilis.environment import Environment

    return Environment(str(ENVIRONMENT), stage=stage, parameters=str(parameters))


def render(stage: str, out: Path, parameters: Path = PARAMETERS) -> list[Path]:
    prepare(stage, FAKE_ACCOUNT)
    stub_for_render(stage)
    env = environment(stage, parameters)
    target = out / stage.upper()
    target.mkdir(parents=True, exist_ok=True)
    written, stacks = [], {}
    for layer in env.layers:
        path = target / f"{layer.name}.json"
        path.write_text(json.dumps(layer.compile(), indent=2, sort_keys=True, default=str) + "\n")
        written.append(path)
        stacks[layer.name] = {"stack": layer.cf_name, "termination_protection": bool(layer.termination_protection)}
    summary = out / f"{stage.upper()}-stacks.json"  # what `make deploy` sets on each stack beyond its template
    summary.write_text(json.dumps(stacks, indent=2) + "\n")
    return written + [summary]


def preview(stage: str, parameters: Path = PARAMETERS) -> int:
    """One change set per layer against what is deployed; print it; delete it. Changes nothing."""
    import boto3

    cf = boto3.client("cloudformation", region_name=region())
    env = environment(stage, parameters)
    changed = 0
    for layer in env.layers:
        exists = layer.in_cf
        name = f"preview-{int(time.time())}"
        cf.create_change_set(StackName=layer.cf_name, ChangeSetName=name,
                             ChangeSetType="UPDATE" if exists else "CREATE",
                             TemplateBody=json.dumps(layer.compile(), default=str),
                             Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
        for _ in range(300):
            described = cf.describe_change_set(StackName=layer.cf_name, ChangeSetName=name)
            if described["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
                break
            time.sleep(1)
        changes = described.get("Changes", [])
        print(f"{layer.cf_name}: {'update' if exists else 'new stack'}, {len(changes)} change(s)")
        for change in changes:
            rc = change["ResourceChange"]
            print(f"    {rc['Action']:<8} {rc['LogicalResourceId']:<32} {rc['ResourceType']}"
                  f"{'  (replacement: ' + rc['Replacement'] + ')' if rc.get('Replacement') else ''}")
        changed += len(changes)
        cf.delete_change_set(StackName=layer.cf_name, ChangeSetName=name)
        if not exists:
            cf.delete_stack(StackName=layer.cf_name)  # the REVIEW_IN_PROGRESS shell of a new stack
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="humilis for the Letgo data platform")
    parser.add_argument("action", choices=["render", "create", "update", "delete", "preview"])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--out", default=str(REPO / "build" / "rendered"))
    parser.add_argument("--output", help="write the environment outputs to this YAML file (create/update)")
    parser.add_argument("--parameters", default=str(PARAMETERS), help="per-stage parameters (YAML)")
    parser.add_argument("--confirm", help="delete: letgo-<STAGE>, required when the stage protects its data")
    args = parser.parse_args(argv)
    args.parameters = Path(args.parameters).resolve()  # before prepare() changes the working folder
    args.out = Path(args.out).resolve()
    args.output = args.output and str(Path(args.output).resolve())
    quiet = args.action == "render"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    for name in ("humilis", "boto3facade", "keyring"):
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)

    if args.action == "render":
        for path in render(args.stage, args.out, args.parameters):
            print(path)
        return 0

    account = caller_account()
    prepare(args.stage, account)
    if os.environ.get("AWS_ENDPOINT_URL"):
        speed_up_polling()
    import boto3

    if str(REPO) not in sys.path:  # run as a script, deploy/ is on the path but the repository is not
        sys.path.insert(0, str(REPO))
    from deploy import stage_guards

    cloudformation = boto3.client("cloudformation", region_name=region())
    env = environment(args.stage, args.parameters)
    if args.action == "delete":
        try:
            stage_guards.destroy(cloudformation, env.layers, ENV_NAME, args.stage, args.confirm)
        except stage_guards.DestroyRefused as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 2
        return 0
    try:
        stage_guards.check_opensearch_role(boto3.client("iam", region_name=region()), env.layers)
        stage_guards.check_statistics_position(cloudformation, env.layers)
        stage_guards.check_single_consumer(cloudformation, env.layers)
    except stage_guards.PreflightFailed as failed:
        print(f"stopped before deploying: {failed}", file=sys.stderr)
        return 2
    bootstrap_bucket(deploy_bucket(account, args.stage))
    if args.action == "preview":
        print(f"{preview(args.stage, args.parameters)} change(s) in total; nothing was applied")
        return 0
    env.create(output_file=args.output, update=args.action == "update")
    stage_guards.sync_termination_protection(cloudformation, env.layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
