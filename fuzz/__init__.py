"""Fuzz targets for diaproto: ``python -m fuzz --seconds N [--target NAME]``.

``fuzz/harness.py`` holds the registry and the rule (only documented exceptions);
every ``fuzz/targets_*.py`` module registers targets with ``@target("name")``.
"""
