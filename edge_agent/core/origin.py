"""``Origin``: where a batch comes from in the plant hierarchy (site, area, line, machine).

It names the MQTT topics and the InfluxDB point tags, so every room that routes or stores a batch
uses it; it lives here, below them all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a batch comes from in the plant hierarchy; names the topic and the point tags."""

    site: str
    area: str
    line: str
    machine: str

    def topic(self, prefix: str, kind: str) -> str:
        """``{prefix}/{site}/{area}/{line}/{machine}/{kind}``."""
        return f"{prefix}/{self.site}/{self.area}/{self.line}/{self.machine}/{kind}"
