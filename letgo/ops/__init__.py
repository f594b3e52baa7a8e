"""AWS operations: what the ``letgo`` CLI does to a *deployed* stage — kept apart from the local stage.

================================  ===============================================================================
``stacks``                        a stage's CloudFormation stacks and their outputs (``StackNotFound``,
                                  ``StackOutputMissing`` name the stack and the output)
``redshift_migrations``           ``migrations/redshift/`` applied statement by statement, load specs published
``warehouse``                     the stage's warehouse from its stacks: migrate, (re)load a day's objects
``search_setup``                  templates, aliases and access roles of the stage's OpenSearch domain, as its
                                  admin role (an explicit boto3 session, never ``os.environ``)
``recoveries``                    ``letgo recover --stage``: re-read here, re-deliver by invoking the deployed functions
``replay``                        ``letgo metrics replay --stage``: stop the mapping, delete rows, redeploy from T
``humilis_layers``                our layers as humilis ``layer_type``s (the ``humilis.layers`` entry points)
================================  ===============================================================================

Why a package inside ``letgo/`` and not under ``deploy/``: these operations run in the project's virtualenv,
next to the CLI, and use the run-time code (the Redshift Data API wrapper, the loader, the search backend,
the recovery machinery); the humilis layer registry must be importable from the *installed* distribution,
since humilis finds it through entry points. ``deploy/`` holds scripts — humilis driven from its own
virtualenv (``humilis_run.py``), Lambda packaging (``package.py``) — and is not an installed package: a
top-level ``deploy`` package would also be a poor neighbour in another team's virtualenv.

Rules: the local stage (``letgo`` outside ``ops`` and ``cli``) never imports this package; AWS clients come in
as arguments, and an assumed role is an explicit ``boto3.session.Session`` handed down — nothing here writes
``os.environ``. This ``__init__`` imports nothing: ``humilis_layers`` loads inside humilis's own virtualenv.
"""
