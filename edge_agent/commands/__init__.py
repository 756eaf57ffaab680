"""Commands: the ``edge-agent`` command line and what it runs (demo, doctor, certs, discover, model)."""
