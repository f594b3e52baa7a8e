"""Local and deploy-time tooling: the local stage and the tools around it, the AWS operations on a deployed
stage (:mod:`letgo.ops`), and the ``letgo`` CLI over both (:mod:`letgo.cli`).

Imports ``handlers`` (the run-time code) and never the other way round; the local stage never imports
:mod:`letgo.ops` (tests/unit/test_layout.py). Imports nothing itself: humilis loads :mod:`letgo.ops.humilis_layers`
from its own virtualenv.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
