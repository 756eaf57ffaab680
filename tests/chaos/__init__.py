"""Chaos: the whole pipeline as subprocesses on real servers, with outages injected (pytest -m chaos)."""
