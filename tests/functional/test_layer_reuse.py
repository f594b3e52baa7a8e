"""Another team reuses our layers the humilis way: ``pip install`` our package, then ``layer_type: letgo-kinesis``.

The wheel is built from this checkout, installed with humilis in a fresh virtualenv that cannot see the checkout,
and another team's environment (its own name, its own layer name, literal values where ours has references) is
rendered there. Its template must be ours — the DEV kinesis layer our own environment renders — except for where
the code package is uploaded (humilis keys uploads by environment and layer). The layer folders once were not in
the package at all, and that render produced a template with empty ``Resources``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy_kit import LAYERS, REPO, load, render

pytestmark = pytest.mark.functional

RENDER = '''
import json, sys
import humilis.environment, humilis.layer
from humilis.config import config

class Sts:
    def get_caller_identity(self):
        return {"Account": "123456789012"}

class Boto3:
    @staticmethod
    def client(service, *args, **kwargs):
        return Sts()

humilis.environment.boto3 = humilis.layer.boto3 = Boto3
def lambda_ref(layer, cfg, path=None, **_):
    return {"s3bucket": "my-team-deploy", "s3key": "my-team/" + path.rsplit("/", 1)[-1]}
config.reference_parsers["lambda"] = lambda_ref

import letgo.ops.humilis_layers as layers
env = humilis.environment.Environment(sys.argv[1], stage="DEV")
print(json.dumps({"layers_dir": str(layers.LAYERS_DIR),
                  "templates": {layer.name: layer.compile() for layer in env.layers}}, default=str))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv with humilis (requirements-humilis.txt) and our wheel, nothing else."""
    work = tmp_path_factory.mktemp("reuse")
    wheels = work / "wheels"
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("letgo_data_platform-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REPO / "requirements-humilis.txt")], check=True, capture_output=True, timeout=900)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    return work, wheel, venv


def test_the_wheel_carries_every_layer_folder_an_entry_point_names(installed):
    _, wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    for layer in {layer for layer in LAYERS if layer not in ("search-api", "model-serving")} | {"beanstalk"}:
        folder = f"letgo/layers/{layer}/"
        assert {folder + "meta.yaml", folder + "resources.yaml.j2", folder + "outputs.yaml.j2"} <= names, layer
        assert f"letgo-{layer} = letgo.ops.humilis_layers:" in declared, layer
    assert "letgo_artefact = letgo.ops.humilis_artefacts:parser" in declared
    assert not any(n.startswith(("tests/", "deploy/", "environments/")) for n in names)


def another_teams_environment(stage_values: dict) -> dict:
    """A kinesis layer with the values our DEV environment gives it, written out as literals (no references)."""
    from deploy.humilis_run import placeholder

    manifest = json.loads((REPO / "dist" / "manifest.json").read_text())
    outputs = {name: placeholder(output, "DEV") for name, output in {
        "data_key_arn": "DataKeyArn", "raw_bucket_name": "RawBucketName", "raw_bucket_arn": "RawBucketArn",
        "quarantine_bucket_name": "QuarantineBucketName", "quarantine_bucket_arn": "QuarantineBucketArn",
        "processed_bucket_arn": "ProcessedBucketArn", "subnet_ids": "PrivateSubnetIds",
        "lambda_security_group_id": "LambdaSecurityGroupId", "database_secret_arn": "SecretArn",
        "database_host": "ClusterEndpoint", "database_port": "ClusterPort", "database_resource_id": "ClusterResourceId",
        "alarm_topic_arn": "AlarmTopicArn"}.items()}
    ours = yaml.safe_load((REPO / "environments" / "parameters.yaml").read_text())
    values = {**ours["_default"], **ours["DEV"], **stage_values}
    layer = {"layer": "events", "layer_type": "letgo-kinesis", **outputs,
             "consumer_zip": {"$lambda": {"path": str(REPO / "dist" / manifest["consumer"]["file"])}}}
    for theirs, mine in (("shard_count", "shard_count"), ("retention_hours", "retention_hours"),
                         ("batch_size", "batch_size"), ("batching_window_seconds", "batching_window_seconds"),
                         ("max_retries", "max_retries"), ("max_record_age_seconds", "max_record_age_seconds"),
                         ("parallelization_factor", "parallelization_factor"), ("memory_mb", "consumer_memory_mb"),
                         ("timeout_seconds", "consumer_timeout_seconds"), ("log_retention_days", "log_retention_days"),
                         ("iterator_age_alarm_ms", "iterator_age_alarm_ms"),
                         ("error_alarm_threshold", "error_alarm_threshold"), ("retain_data", "protect_data"),
                         ("termination_protection", "protect_data"), ("consumer", "consumer")):
        if mine in values:
            layer[theirs] = values[mine]
    return {"my-team": {"description": "My team's stream", "layers": [layer]}}


def comparable(template: dict) -> dict:
    """Resources and outputs, with the code's S3 location (keyed by environment and layer) reduced to its file."""
    text = json.dumps({"Resources": template["Resources"], "Outputs": template["Outputs"]}, sort_keys=True,
                      default=str)
    template = json.loads(text)
    for resource in template["Resources"].values():
        code = resource.get("Properties", {}).get("Code")
        if isinstance(code, dict) and "S3Key" in code:
            code["S3Key"], code["S3Bucket"] = code["S3Key"].rsplit("/", 1)[-1], "bucket"
    return template


def test_another_team_renders_our_kinesis_layer_from_the_installed_package_exactly_as_we_do(installed, tmp_path):
    work, _, venv = installed
    team = work / "my-team"
    team.mkdir(exist_ok=True)
    (team / "my-team.yaml").write_text(yaml.safe_dump(another_teams_environment({})))
    (team / "render.py").write_text(RENDER)
    done = subprocess.run([str(venv / "bin" / "python"), "render.py", "my-team.yaml"], cwd=team, capture_output=True,
                          text=True, timeout=300, env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                                                      "HOME": str(team)})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    site = venv / "lib"
    assert Path(result["layers_dir"]).is_relative_to(site), result["layers_dir"]  # the installed copy, not ours
    theirs = result["templates"]["events"]
    assert theirs["Resources"], "an empty template: the layer folder is missing from the package"

    ours = load(render("DEV", tmp_path / "ours") / "kinesis.json")
    assert comparable(theirs) == comparable(ours)
