"""Pure conversions from OPC UA service results to ``Sample``s. No sockets here."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from enum import Enum

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from edge_agent.core.errors import UnsupportedValue
from edge_agent.core.samples import Quality, Sample, Value

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPC_NULL_TIME = datetime(1601, 1, 1, tzinfo=UTC)
"""OPC UA encodes "no timestamp" as 0, which asyncua decodes as 1601-01-01."""

_MICROSECOND = timedelta(microseconds=1)


def datetime_to_ns(moment: datetime) -> int:
    """UTC nanoseconds since the Unix epoch, exact to the microsecond asyncua keeps. Naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - UNIX_EPOCH) // _MICROSECOND * 1000


def _is_set(moment: datetime | None) -> bool:
    if moment is None:
        return False
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware > OPC_NULL_TIME


def timestamp_ns(data_value: ua.DataValue, received_ns: int) -> int:
    """SourceTimestamp, else ServerTimestamp, else the time the answer arrived."""
    if _is_set(data_value.SourceTimestamp):
        assert data_value.SourceTimestamp is not None
        return datetime_to_ns(data_value.SourceTimestamp)
    if _is_set(data_value.ServerTimestamp):
        assert data_value.ServerTimestamp is not None
        return datetime_to_ns(data_value.ServerTimestamp)
    return received_ns


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Good, uncertain or bad from the status code's severity bits (a missing status means good)."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def status_name(status: ua.StatusCode) -> str:
    """The symbolic name of a status code, e.g. 'BadNodeIdUnknown', or its hex value if unknown."""
    try:
        name: str | None = status.name
    except (KeyError, AttributeError):
        name = None
    return name or f"0x{status.value:08X}"


def to_value(raw: object) -> Value:
    """A value a ``Sample`` can carry. Raises ``UnsupportedValue`` for arrays, structures and the like."""
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, Enum) and isinstance(raw.value, int):
        return int(raw.value)
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise UnsupportedValue(f"the server sent {raw} (not a finite number)")
        return float(raw)
    if isinstance(raw, ua.LocalizedText):
        return raw.Text or ""
    if isinstance(raw, datetime):
        aware = raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(raw, list | tuple):
        raise UnsupportedValue(
            f"the node holds an array of {len(raw)} values. Fix: pick one element with index (0 is the first)"
        )
    raise UnsupportedValue(f"the node holds a {type(raw).__name__}; only numbers, booleans and text are supported")


def element(raw: object, index: int) -> object:
    """Element ``index`` of an array value; ``UnsupportedValue`` when it is no array or too short."""
    if not isinstance(raw, list | tuple):
        raise UnsupportedValue(f"index {index} is set, but the node holds a single value. Fix: remove index")
    if index >= len(raw):
        raise UnsupportedValue(f"index {index} is past the end of the node's array of {len(raw)} values")
    return raw[index]


def to_sample(
    tag: str,
    data_value: ua.DataValue,
    received_ns: int,
    *,
    unit: str | None = None,
    node: str | None = None,
    index: int | None = None,
) -> Sample:
    """Map one DataValue of a Read (or a data change) to a ``Sample``.

    Bad status: no value, the status name as the reason. Uncertain: the value with the status
    name as the reason. A value the agent cannot carry comes out bad with the reason. With
    ``index``, the value must be an array and the sample carries that element.
    """
    moment = timestamp_ns(data_value, received_ns)
    status = data_value.StatusCode
    quality = quality_of(status)
    if quality is Quality.BAD:
        assert status is not None
        reason = status_name(status)
        if status.value == StatusCodes.BadNodeIdUnknown and node is not None:
            reason += f": the server has no node {node}. Fix: check the node id in an OPC UA browser"
        return Sample.bad(tag, reason, moment, unit)
    variant = data_value.Value
    raw = variant.Value if variant is not None else None
    if raw is None:
        return Sample.bad(tag, "the server returned no value", moment, unit)
    try:
        value = to_value(element(raw, index) if index is not None else raw)
    except UnsupportedValue as exc:
        return Sample.bad(tag, str(exc), moment, unit)
    note = status_name(status) if quality is Quality.UNCERTAIN and status is not None else None
    return Sample(tag, value, moment, quality, note, unit)


def apply_max_age(sample: Sample, received_ns: int, max_age: float | None) -> Sample:
    """``sample`` as uncertain when its timestamp is more than ``max_age`` seconds before ``received_ns``.

    Only good samples change: a bad or already uncertain sample says more than "stale" would.
    """
    if max_age is None or sample.quality is not Quality.GOOD:
        return sample
    age_s = (received_ns - sample.timestamp_ns) / 1e9
    if age_s <= max_age:
        return sample
    reason = f"stale: the source timestamp is {age_s:.1f} s old (max_age {max_age:g} s)"
    return Sample(sample.tag, sample.value, sample.timestamp_ns, Quality.UNCERTAIN, reason, sample.unit)


def silence_of(last: Sample, last_arrival_ns: int, now_ns: int, max_age: float | None) -> Sample | None:
    """Subscribe mode: ``last`` again as uncertain when no change arrived for more than ``max_age`` s.

    A subscription only reports changes, so a tag whose source stopped (a frozen gateway, a PLC
    that stopped updating) just goes quiet. With ``max_age`` set, the tag's last sample is repeated
    at every read while it stays quiet, uncertain with the reason: the same point (its own
    timestamp) as a poll would report it, so a time series shows it exactly as in poll mode.
    None while changes keep coming, without ``max_age``, or when ``last`` was not good anyway.
    """
    if max_age is None or last.quality is not Quality.GOOD:
        return None
    quiet_s = (now_ns - last_arrival_ns) / 1e9
    if quiet_s <= max_age:
        return None
    reason = f"stale: no change reported for {quiet_s:.1f} s (max_age {max_age:g} s)"
    return Sample(last.tag, last.value, last.timestamp_ns, Quality.UNCERTAIN, reason, last.unit)
