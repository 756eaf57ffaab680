"""``python -m edge_agent`` is ``edge-agent``."""

from edge_agent.commands.cli import main

main()
