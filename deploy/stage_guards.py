"""What ``make deploy`` and ``make destroy`` check and set around humilis, so a real stage's data survives them.

humilis has a ``termination_protection`` layer parameter, but all it does is make ``humilis delete`` skip that
layer: the stack itself stays deletable from the console or the CLI. And nothing stops ``make destroy STAGE=PROD``.
So, around humilis (``deploy/humilis_run.py``):

* after a create or update, each stack's CloudFormation termination protection is set to its layer's
  ``termination_protection`` (true for the stateful layers where ``protect_data`` is, PROD) — and cleared when a
  layer no longer asks for it;
* a destroy of a stage with a protected layer refuses unless the operator typed ``CONFIRM=letgo-<STAGE>``; then
  it lifts the protection and deletes every layer in reverse order. What the templates retain (buckets, keys, the
  stream, the search domain, ECR repositories; Aurora and Redshift leave a final snapshot) stays in the account,
  and is listed;
* before a deploy, an enabled search domain needs the account's OpenSearch service-linked role: missing, and not
  created by the stage (``create_opensearch_service_linked_role``), the deploy stops before CloudFormation's
  domain creation would fail half-way;
* before a deploy, the statistics mapping's starting position must be the deployed one: a change would make
  CloudFormation create a second mapping before deleting the first, which Lambda refuses (the update rolls
  back). Only ``letgo metrics replay --stage`` moves it, in two updates (letgo/ops/replay.py);
* before a deploy, one stream consumer (``consumer: lambda | kcl``): a stage switched back to ``lambda`` leaves the
  kcl-consumer layer out of the environment, and humilis never deletes a stack it no longer lists, so the KCL
  fleet would keep reading next to the restored mapping. The deploy stops until that stack is deleted.

Layers come in as humilis ``Layer`` objects (``name``, ``cf_name``, ``termination_protection``, ``delete()``),
AWS clients as arguments: the tests drive these functions with stand-ins and against moto's CloudFormation.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable

OPENSEARCH_SERVICE_LINKED_ROLE = "AWSServiceRoleForAmazonOpenSearchService"


class DestroyRefused(Exception):
    """A destroy of protected layers without the operator's explicit confirmation."""


class PreflightFailed(Exception):
    """The account lacks something the stage needs before CloudFormation is asked for anything."""


def confirmation(env_name: str, stage: str) -> str:
    return f"{env_name}-{stage.upper()}"


def _deployed(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        return cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cloudformation.exceptions.ClientError:
        return None


def sync_termination_protection(cloudformation: Any, layers: Iterable[Any],
                                say: Callable[[str], None] = print) -> dict[str, bool]:
    """Each deployed layer's stack protected exactly when its ``termination_protection`` says; returns the state."""
    state = {}
    for layer in layers:
        stack = _deployed(cloudformation, layer.cf_name)
        if stack is None:
            continue
        wanted = bool(layer.termination_protection)
        if bool(stack.get("EnableTerminationProtection")) != wanted:
            cloudformation.update_termination_protection(StackName=layer.cf_name, EnableTerminationProtection=wanted)
            say(f"{layer.cf_name}: termination protection {'on' if wanted else 'off'}")
        state[layer.cf_name] = wanted
    return state


def retained(template: dict[str, Any]) -> list[str]:
    """The resources a stack's deletion leaves behind: '<logical id> (<type>, Retain|Snapshot)'."""
    return [f"{name} ({resource['Type']}, {resource['DeletionPolicy']})"
            for name, resource in template.get("Resources", {}).items()
            if resource.get("DeletionPolicy") in ("Retain", "Snapshot")]


def check_destroy(layers: list[Any], env_name: str, stage: str, confirm: str | None) -> list[Any]:
    """The layers to delete, in reverse order; raises :class:`DestroyRefused` for protected ones unconfirmed."""
    protected = [layer.name for layer in layers if layer.termination_protection]
    expected = confirmation(env_name, stage)
    if protected and confirm != expected:
        raise DestroyRefused(
            f"{stage.upper()} protects its data layers ({', '.join(protected)}): destroying it deletes their "
            f"stacks (retained buckets, keys, stream, domain and repositories stay in the account; Aurora and "
            f"Redshift leave a final snapshot). To go ahead: make destroy STAGE={stage.upper()} CONFIRM={expected}")
    if confirm is not None and confirm != expected:
        raise DestroyRefused(f"CONFIRM={confirm} does not name this stage; expected CONFIRM={expected}")
    return list(reversed(layers))


def destroy(cloudformation: Any, layers: list[Any], env_name: str, stage: str, confirm: str | None,
            say: Callable[[str], None] = print) -> list[str]:
    """Delete every layer (reverse order) once :func:`check_destroy` agrees; returns what stays in the account."""
    ordered = check_destroy(layers, env_name, stage, confirm)
    left: list[str] = []
    for layer in ordered:
        stack = _deployed(cloudformation, layer.cf_name)
        if stack is None:
            continue
        body = cloudformation.get_template(StackName=layer.cf_name)["TemplateBody"]  # what is deployed
        left += [f"{layer.cf_name}: {item}" for item in retained(json.loads(body) if isinstance(body, str) else body)]
        if stack.get("EnableTerminationProtection"):
            cloudformation.update_termination_protection(StackName=layer.cf_name, EnableTerminationProtection=False)
            say(f"{layer.cf_name}: termination protection lifted (confirmed)")
        layer.delete()
    for item in left:
        say(f"kept in the account: {item}")
    return left


def check_opensearch_role(iam: Any, layers: Iterable[Any]) -> None:
    """A search domain in a VPC needs the account's service-linked role: there already, or created by the stage."""
    search = [layer for layer in layers if layer.name == "elasticsearch"]
    if not search:
        return
    creates = search[0].yaml_params.get("create_service_linked_role", {}).get("value")
    if str(creates).lower() == "true":
        return
    try:
        iam.get_role(RoleName=OPENSEARCH_SERVICE_LINKED_ROLE)
    except iam.exceptions.NoSuchEntityException:
        raise PreflightFailed(
            f"this account has no {OPENSEARCH_SERVICE_LINKED_ROLE}, which the search domain (in a VPC) needs: set "
            f"create_opensearch_service_linked_role: true for this stage in environments/parameters.yaml (once per "
            f"account), or create it: aws iam create-service-linked-role --aws-service-name "
            f"opensearchservice.amazonaws.com") from None


def statistics_position(layer: Any) -> str | None:
    """Where a statistics layer's mapping would read from ('LATEST', 'AT_TIMESTAMP:<epoch>'), None without one."""
    params = {name: spec.get("value") for name, spec in layer.yaml_params.items()}
    if str(params.get("mapping", True)).lower() == "false":
        return None
    replay_from = int(params.get("replay_from") or 0)
    return f"AT_TIMESTAMP:{replay_from}" if replay_from else "LATEST"


def check_statistics_position(cloudformation: Any, layers: Iterable[Any]) -> None:
    """Refuse a deploy that would move the deployed statistics mapping (see the module's docstring)."""
    for layer in layers:
        if layer.name != "statistics":
            continue
        stack = _deployed(cloudformation, layer.cf_name)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
        deployed, wanted = outputs.get("StartingPosition"), statistics_position(layer)
        if deployed and wanted and deployed != wanted:
            raise PreflightFailed(
                f"{layer.cf_name}'s mapping reads from {deployed}, the parameters say {wanted}: a deploy cannot move "
                f"it (Lambda refuses the second mapping CloudFormation would create first). Keep "
                f"statistics_replay_from: {deployed.partition(':')[2] or 0} for this stage in environments/"
                f"parameters.yaml, or replay: letgo metrics replay --stage <STAGE> --since <T>")


def check_single_consumer(cloudformation: Any, layers: Iterable[Any]) -> None:
    """Refuse a deploy that gives the kinesis layer's consumer its mapping while the stage's KCL fleet still runs."""
    layers = list(layers)
    if any(layer.name == "kcl-consumer" for layer in layers):
        return  # consumer: kcl (the kinesis layer then has no mapping)
    for layer in layers:
        if layer.name != "kinesis":
            continue
        params = {name: spec.get("value") for name, spec in layer.yaml_params.items()}
        if str(params.get("consumer_mapping", True)).lower() == "false":
            return
        fleet = _sibling_stack(layer, "kcl-consumer")
        stack = _deployed(cloudformation, fleet)
        if stack and stack.get("StackStatus") != "DELETE_COMPLETE":
            raise PreflightFailed(
                f"{fleet} (the KCL fleet, consumer: kcl) still reads the stream, and this deploy gives the kinesis "
                f"layer's consumer its mapping back (consumer: lambda): a stage never runs both. Delete the fleet "
                f"first - aws cloudformation delete-stack --stack-name {fleet} (a protected stage: aws "
                f"cloudformation update-termination-protection --no-enable-termination-protection --stack-name "
                f"{fleet} before; its lease table is retained there) - then deploy")


def _sibling_stack(layer: Any, other: str) -> str:
    """The stack name of another layer of ``layer``'s environment and stage (humilis: <env>-<layer>-<stage>)."""
    return f"{layer.env_name}-{other}-{layer.env_stage}"
