"""Tests of the bundled simulators (they never import the agent, and neither do these tests)."""
