"""Shared fixtures: small inputs built in code (see tests/data/README.md)."""
