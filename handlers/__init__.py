"""Run-time code of the Letgo data platform: everything here ships to AWS.

One sub-package per system plus a small shared core. Deploy-time code (templates, packaging, the local
stage, the CLI) lives outside this package and imports it, never the other way round.
"""
