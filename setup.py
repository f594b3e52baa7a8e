"""Packaging beyond what pyproject.toml's find directive can say: the humilis layer folders ship in the wheel.

``layers/<name>/`` stays where the design puts it (top level, next to ``environments/``); in the built package it
becomes ``letgo/layers/<name>/``, so another team's ``pip install`` of this project gets the very folders our
``layer_type: letgo-<name>`` entry points name (``letgo/ops/humilis_layers.py`` looks there first, then in the
checkout). Everything else is in ``pyproject.toml``.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["handlers*", "letgo*"]) + ["letgo.layers"],
    package_dir={"letgo.layers": "layers"},
    package_data={"letgo.layers": ["*/*.yaml", "*/*.j2", "*/*/*.yaml", "*/*/*.j2"]},
)
