"""Run moto's server with four CloudFormation gaps closed, so humilis (and make deploy) run on it unchanged.

humilis deploys every stack through change sets. moto 5 (checked on 5.1/5.2) (1) gives a stack created
or updated by ``ExecuteChangeSet`` no Outputs — it never rebuilds the output map — and (2) marks a no-op
UPDATE change set ``FAILED``, where CloudFormation (and humilis, which then says "nothing to update")
expects a complete change set without changes. (3) It answers ``UpdateTerminationProtection`` "not
implemented" (``deploy/humilis_run.py`` protects a real stage's data layers with it) and deletes a protected
stack anyway; here the flag is set, and a protected stack refuses ``DeleteStack`` as CloudFormation does.
(4) A resource that one update removes and a later one adds back (a statistics replay's mapping,
letgo/ops/replay.py) is never created again: moto deletes it but keeps it in its map of created resources.
The patches are a few lines on moto's classes; the server is otherwise moto's own
(``python -m letgo.services.moto_launcher -H 127.0.0.1 -p PORT``).
"""
from __future__ import annotations

import sys
from typing import Any


def patch_moto() -> None:
    from moto.cloudformation import models

    original_apply = models.ChangeSet.apply

    def apply_and_rebuild_outputs(self: Any) -> None:
        original_apply(self)
        self.stack.template = self.template
        self.stack.template_dict = self.template_dict
        self.stack.output_map = self.stack._create_output_map()

    original_create = models.CloudFormationBackend.create_change_set

    def create_change_set_noop_complete(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_id, stack_id = original_create(self, *args, **kwargs)
        change_set = self.change_sets[change_set_id]
        if change_set.status == "FAILED" and change_set.change_set_type == "UPDATE":
            change_set.status, change_set.execution_status, change_set.changes = "CREATE_COMPLETE", "AVAILABLE", []
        return change_set_id, stack_id

    models.ChangeSet.apply = apply_and_rebuild_outputs
    models.CloudFormationBackend.create_change_set = create_change_set_noop_complete
    patch_termination_protection()
    patch_removed_resources()


def patch_removed_resources() -> None:
    from moto.cloudformation import parsing

    original_delete, original_update = parsing.ResourceMap._delete_resource, parsing.ResourceMap.update

    def delete_and_forget(self: Any, parsed_resource: Any, resource_json: Any) -> None:
        original_delete(self, parsed_resource, resource_json)
        if getattr(self, "_letgo_updating", False):  # a stack's deletion pops its resources itself
            for name in [n for n, r in self._parsed_resources.items() if r is parsed_resource]:
                del self._parsed_resources[name]

    def update(self: Any, *args: Any, **kwargs: Any) -> None:
        self._letgo_updating = True
        try:
            original_update(self, *args, **kwargs)
        finally:
            self._letgo_updating = False

    parsing.ResourceMap._delete_resource = delete_and_forget
    parsing.ResourceMap.update = update


def patch_termination_protection() -> None:
    from moto.cloudformation import models, responses
    from moto.cloudformation.exceptions import ValidationError
    from moto.core.responses import ActionResult

    def update_termination_protection(self: Any) -> Any:
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = str(self._get_param("EnableTerminationProtection")).lower() == "true"
        return ActionResult({"StackId": stack.stack_id})

    original_delete = models.CloudFormationBackend.delete_stack

    def delete_unless_protected(self: Any, name_or_stack_id: str) -> None:
        for stack in self.stacks.values():
            if name_or_stack_id in (stack.stack_id, stack.name) and stack.enable_termination_protection:
                raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection "
                                              f"is enabled")
        original_delete(self, name_or_stack_id)

    responses.CloudFormationResponse.update_termination_protection = update_termination_protection
    models.CloudFormationBackend.delete_stack = delete_unless_protected


def main(argv: list[str] | None = None) -> None:
    patch_moto()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
