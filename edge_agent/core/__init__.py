"""The leaf everything may import: samples and batches, errors, durations, the strict config base,
connection state, machine origin, and the small utilities every room shares (backoff, memory).

It imports nothing of the project, so connectors, models and every room of the agent can build on
it without an arrow running back up (the layering test in tests/test_layering.py enforces it).
"""
