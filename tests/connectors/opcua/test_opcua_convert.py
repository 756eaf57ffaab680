"""Pure mapping of OPC UA DataValues to samples: timestamps, qualities, values, staleness, node ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from connectors.opcua.changes import ChangeQueue
from connectors.opcua.convert import (
    apply_max_age,
    datetime_to_ns,
    quality_of,
    status_name,
    timestamp_ns,
    to_sample,
    to_value,
)
from connectors.opcua.nodes import chunked, engineering_units_path, resolve_node
from edge_agent.core.errors import UnsupportedValue
from edge_agent.core.samples import Quality, Sample

SOURCE = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SERVER = SOURCE + timedelta(milliseconds=5)
RECEIVED = 1_800_000_000_000_000_000


def data_value(
    value: object = 1.5,
    status: int = StatusCodes.Good,
    *,
    SourceTimestamp: datetime | None = None,
    ServerTimestamp: datetime | None = None,
) -> ua.DataValue:
    # ua.DateTime is asyncua's marker subclass of datetime; a plain datetime encodes alike
    return ua.DataValue(
        ua.Variant(value),
        StatusCode=status_code(status),
        SourceTimestamp=cast("ua.DateTime | None", SourceTimestamp),
        ServerTimestamp=cast("ua.DateTime | None", ServerTimestamp),
    )


def status_code(code: int) -> ua.StatusCode:
    """asyncua's constructor is typed for its own UInt32, an int subclass."""
    return ua.StatusCode(ua.UInt32(code))


def node_id(identifier: str | int, namespace_index: int) -> ua.NodeId:
    """asyncua's constructor is typed for its own String/Int32/Int16 subclasses of str and int."""
    typed = ua.String(identifier) if isinstance(identifier, str) else ua.Int32(identifier)
    return ua.NodeId(typed, ua.Int16(namespace_index))


def test_datetime_to_ns_is_exact() -> None:
    assert datetime_to_ns(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert datetime_to_ns(SOURCE) == 1767323045678901000
    assert datetime_to_ns(SOURCE.replace(tzinfo=None)) == 1767323045678901000  # naive means UTC


def test_timestamp_fallbacks() -> None:
    both = data_value(SourceTimestamp=SOURCE, ServerTimestamp=SERVER)
    assert timestamp_ns(both, RECEIVED) == datetime_to_ns(SOURCE)
    assert timestamp_ns(data_value(ServerTimestamp=SERVER), RECEIVED) == datetime_to_ns(SERVER)
    assert timestamp_ns(data_value(), RECEIVED) == RECEIVED
    null = datetime(1601, 1, 1, tzinfo=UTC)  # what a zero OPC UA DateTime decodes to
    assert timestamp_ns(data_value(SourceTimestamp=null, ServerTimestamp=SERVER), RECEIVED) == datetime_to_ns(SERVER)


@pytest.mark.parametrize(
    ("status", "quality"),
    [
        (StatusCodes.Good, Quality.GOOD),
        (StatusCodes.GoodLocalOverride, Quality.GOOD),
        (StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (StatusCodes.BadNodeIdUnknown, Quality.BAD),
        (StatusCodes.BadCommunicationError, Quality.BAD),
    ],
)
def test_quality_from_status(status: int, quality: Quality) -> None:
    assert quality_of(status_code(status)) is quality
    assert quality_of(None) is Quality.GOOD


def test_status_names() -> None:
    assert status_name(status_code(StatusCodes.BadNodeIdUnknown)) == "BadNodeIdUnknown"
    assert status_name(status_code(0x80FF0000)).startswith(("0x80FF0000", "Bad"))


def test_samples_from_data_values() -> None:
    good = to_sample("t", data_value(2.5, SourceTimestamp=SOURCE), RECEIVED, unit="bar")
    assert good == Sample("t", 2.5, datetime_to_ns(SOURCE), Quality.GOOD, None, "bar")
    uncertain = to_sample("t", data_value(2.5, StatusCodes.UncertainLastUsableValue), RECEIVED)
    assert (uncertain.quality, uncertain.value, uncertain.reason) == (
        Quality.UNCERTAIN,
        2.5,
        "UncertainLastUsableValue",
    )
    bad = to_sample("t", data_value(2.5, StatusCodes.BadSensorFailure), RECEIVED)
    assert (bad.quality, bad.value, bad.reason) == (Quality.BAD, None, "BadSensorFailure")
    unknown = to_sample("t", data_value(None, StatusCodes.BadNodeIdUnknown), RECEIVED, node="ns=2;s=x")
    assert unknown.reason is not None
    assert unknown.reason.startswith("BadNodeIdUnknown: the server has no node ns=2;s=x. Fix:")
    empty = to_sample("t", ua.DataValue(), RECEIVED)
    assert (empty.quality, empty.reason) == (Quality.BAD, "the server returned no value")
    array = to_sample("t", data_value([1, 2]), RECEIVED)
    assert array.quality is Quality.BAD
    assert "Fix: pick one element with index" in (array.reason or "")
    assert to_sample("t", data_value([1.5, 2.5]), RECEIVED, index=1).value == 2.5
    past = to_sample("t", data_value([1.5, 2.5]), RECEIVED, index=2)
    assert (past.quality, past.reason) == (Quality.BAD, "index 2 is past the end of the node's array of 2 values")
    single = to_sample("t", data_value(1.5), RECEIVED, index=0)
    assert single.quality is Quality.BAD
    assert "holds a single value" in (single.reason or "")


def test_values() -> None:
    assert to_value(True) is True
    assert to_value(7) == 7
    assert to_value(ua.ServerState.Running) == 0
    assert type(to_value(ua.ServerState.Running)) is int
    assert to_value(ua.LocalizedText("Auto", "en")) == "Auto"
    assert to_value(SOURCE) == "2026-01-02T03:04:05.678901+00:00"
    for not_finite in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(UnsupportedValue, match="not a finite number"):
            to_value(not_finite)
    with pytest.raises(UnsupportedValue, match="array of 2"):
        to_value([1, 2])
    with pytest.raises(UnsupportedValue, match="QualifiedName"):
        to_value(ua.QualifiedName("x", 1))


def test_staleness() -> None:
    fresh = Sample("t", 1.0, RECEIVED - 2 * 10**9)
    assert apply_max_age(fresh, RECEIVED, 5.0) is fresh
    assert apply_max_age(fresh, RECEIVED, None) is fresh
    stale = apply_max_age(fresh, RECEIVED, 1.0)
    assert (stale.quality, stale.value, stale.timestamp_ns) == (Quality.UNCERTAIN, 1.0, fresh.timestamp_ns)
    assert stale.reason == "stale: the source timestamp is 2.0 s old (max_age 1 s)"
    bad = Sample.bad("t", "BadSensorFailure", RECEIVED - 10**12)
    assert apply_max_age(bad, RECEIVED, 1.0) is bad


def test_resolve_node() -> None:
    namespaces = ["http://opcfoundation.org/UA/", "urn:a", "urn:b"]
    assert resolve_node("nsu=urn:b;s=X.Y", namespaces) == node_id("X.Y", 2)
    assert resolve_node("nsu=urn:a;i=5", namespaces) == node_id(5, 1)
    assert resolve_node("ns=7;s=X", namespaces) == node_id("X", 7)
    assert resolve_node("i=2258", namespaces) == node_id(2258, 0)
    with pytest.raises(LookupError, match=r"no namespace 'urn:c'.*'urn:a', 'urn:b'"):
        resolve_node("nsu=urn:c;s=X", namespaces)


def test_chunked() -> None:
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunked([1, 2, 3], 0) == [[1, 2, 3]]
    assert chunked([1, 2, 3], 3) == [[1, 2, 3]]


def test_change_queue_is_bounded_and_counts_what_it_drops() -> None:
    queue = ChangeQueue(2)
    samples = [Sample("t", float(i), RECEIVED + i) for i in range(5)]
    assert [queue.put(s) for s in samples] == [False, False, True, True, True]
    assert (len(queue), queue.dropped) == (2, 3)
    assert queue.take_all() == samples[3:]
    assert len(queue) == 0
    queue.put(samples[0])
    queue.clear()
    assert (len(queue), queue.dropped) == (0, 3)
    with pytest.raises(ValueError, match="at least one"):
        ChangeQueue(0)


def test_engineering_units_path() -> None:
    path = engineering_units_path(node_id("X", 2))
    assert path.StartingNode == node_id("X", 2)
    [element] = path.RelativePath.Elements
    assert element.TargetName == ua.QualifiedName("EngineeringUnits", 0)
    assert element.IsInverse is False
