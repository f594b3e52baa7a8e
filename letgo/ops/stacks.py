"""A deployed stage's CloudFormation stacks and their outputs — where everything of the stage is.

humilis names a layer's stack ``letgo-<layer>-<STAGE>``; its outputs publish names and ARNs, so operations on a
deployed stage need nothing typed and nothing secret on the command line. A missing stack or output raises an
error naming both, with what to do about it.
"""
from __future__ import annotations

from typing import Any


class StackError(Exception):
    """A deployed stage is not as the operation expects (a stack or one of its outputs is missing)."""


class StackNotFound(StackError):
    """A layer's stack does not exist (or cannot be described) in this account and region."""

    def __init__(self, stack: str, stage: str, reason: str) -> None:
        self.stack, self.stage, self.reason = stack, stage, reason
        super().__init__(f"stack {stack} not found ({reason}): deploy the stage first "
                         f"(`make deploy STAGE={stage.upper()}`)")


class StackOutputMissing(StackError):
    """A stack exists but lacks an output the operation reads (deployed from older templates?)."""

    def __init__(self, stack: str, output: str, known: list[str]) -> None:
        self.stack, self.output, self.known = stack, output, known
        super().__init__(f"stack {stack} has no output {output!r} (it has: {', '.join(known) or 'none'}): "
                         f"deploy the current templates (`make deploy`)")


def stack_name(layer: str, stage: str) -> str:
    return f"letgo-{layer}-{stage.upper()}"


class StackOutputs(dict):  # type: ignore[type-arg]
    """A stack's outputs by key; a missing key raises :class:`StackOutputMissing` (not a bare KeyError)."""

    def __init__(self, stack: str, outputs: dict[str, str]) -> None:
        super().__init__(outputs)
        self.stack = stack

    def __missing__(self, key: str) -> str:
        raise StackOutputMissing(self.stack, key, sorted(self))


def stack_outputs(cloudformation: Any, layer: str, stage: str) -> StackOutputs:
    """A deployed layer's outputs."""
    name = stack_name(layer, stage)
    try:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except cloudformation.exceptions.ClientError as exc:
        raise StackNotFound(name, stage, str(exc)) from None
    return StackOutputs(name, {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})
