"""Shared fixtures: real servers on loopback (tests/servers.py) for every test folder."""

pytest_plugins = ["tests.servers"]
