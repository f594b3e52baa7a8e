"""Run moto's server with two CloudFormation change-set gaps closed, so humilis deploys to it unchanged.

humilis deploys every stack through change sets. moto 5 (checked on 5.1/5.2) (1) gives a stack created
or updated by ``ExecuteChangeSet`` no Outputs — it never rebuilds the output map — and (2) marks a no-op
UPDATE change set ``FAILED``, where CloudFormation (and humilis, which then says "nothing to update")
expects a complete change set without changes. Both patches are a few lines on moto's model classes; the
server is otherwise moto's own (``python -m letgo.services.moto_launcher -H 127.0.0.1 -p PORT``).
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


def main(argv: list[str] | None = None) -> None:
    patch_moto()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
