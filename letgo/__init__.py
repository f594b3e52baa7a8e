"""Deploy-time and local tooling: the local stage, its driver, the traffic generator and the ``letgo`` CLI.

Imports ``handlers`` (the run-time code) and never the other way round.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
