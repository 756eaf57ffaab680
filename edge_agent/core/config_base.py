"""The one strict base of every config model, and the identifier rules config keys share.

Unknown keys are errors, never silently ignored: a typo in a config must say so. Machine ids and
tag names end up in MQTT topics and InfluxDB tags, so the patterns that keep them safe there live
here, beside the base every section builds on.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MACHINE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Machine ids end up in MQTT topics and InfluxDB tags, so no '/', '+', '#', spaces or commas."""

TAG_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
