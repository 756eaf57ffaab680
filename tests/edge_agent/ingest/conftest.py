"""Fixtures of the ingest tests; the rig lives in tests/helpers/ingest_bridge.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.ingest_bridge import Publisher, publishing
from tests.helpers.servers import Mosquitto


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Publisher]:
    with publishing(mosquitto) as pub:
        yield pub
