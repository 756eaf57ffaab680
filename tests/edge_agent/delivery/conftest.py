"""Fixtures of the delivery tests: a topic prefix of the test's own and a subscriber under it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.mqtt import Subscriber
from tests.helpers.servers import Mosquitto, unique_name


@pytest.fixture
def prefix() -> str:
    return unique_name("delivery")


@pytest.fixture
def subscriber(fresh_mosquitto: Mosquitto, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(fresh_mosquitto, prefix)
    try:
        yield sub
    finally:
        sub.close()
