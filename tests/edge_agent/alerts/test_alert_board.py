"""AlertBoard: the page's view of the alert engine, from the engine's schema-1 events."""

from __future__ import annotations

from typing import Any

from edge_agent.alerts.board import AlertBoard


def event(kind: str, machine: str = "pump-1", alert_id: str = "a1", **extra: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "event": kind,
        "alert_id": alert_id,
        "machine": machine,
        "active": kind != "cleared",
        "severity": "warning",
        "acknowledged": kind == "acknowledged",
        "acknowledged_by": "Ana" if kind == "acknowledged" else None,
        "since": "2026-01-05T06:00:00Z",
        "at": "2026-01-05T06:10:00Z",
        "summary": "vibration up",
    } | extra


class Engine:
    """Stands where AlertSink.acknowledge stands: records who acknowledged what, answers True once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def acknowledge(self, machine: str, by: str) -> bool:
        self.calls.append((machine, by))
        return len(self.calls) == 1


def test_the_newest_event_of_each_open_alert_is_shown_and_cleared_ones_move_to_recent() -> None:
    board = AlertBoard(recent_size=2)
    board.record(event("raised"))
    board.record(event("escalated", severity="alarm"))
    board.record(event("raised", machine="press-1", alert_id="b1", severity="critical"))
    assert [(a["machine"], a["severity"]) for a in board.active()] == [("press-1", "critical"), ("pump-1", "alarm")]
    board.record(event("acknowledged", severity="alarm"))
    assert board.active()[1]["acknowledged_by"] == "Ana"
    board.record(event("cleared", at="2026-01-05T07:00:00Z", acknowledged=True, acknowledged_by="Ana"))
    assert [a["machine"] for a in board.active()] == ["press-1"]
    (ended,) = board.recent()
    assert (ended["alert_id"], ended["ended"], ended["acknowledged_by"]) == ("a1", "2026-01-05T07:00:00Z", "Ana")
    for n in range(3):
        board.record(event("cleared", machine=f"m{n}", alert_id=f"c{n}"))
    assert [a["alert_id"] for a in board.recent()] == ["c2", "c1"]  # bounded, newest first


def test_events_it_cannot_place_are_counted_not_shown() -> None:
    board = AlertBoard()
    board.record({"event": "raised"})
    board.record(event("exploded"))
    assert board.active() == []
    assert board.ignored_events == 2


async def test_acknowledge_reaches_the_engine_only_for_the_open_unacknowledged_alert() -> None:
    engine = Engine()
    board = AlertBoard(engine.acknowledge)
    assert not await board.acknowledge("pump-1", "a1", "Ana")  # nothing open
    board.record(event("raised"))
    assert not await board.acknowledge("pump-1", "other", "Ana")  # not this alert
    assert await board.acknowledge("pump-1", "a1", "Ana")
    assert engine.calls == [("pump-1", "Ana")]
    board.record(event("acknowledged"))
    assert not await board.acknowledge("pump-1", "a1", "Bo")  # already acknowledged
    assert engine.calls == [("pump-1", "Ana")]
    assert not await AlertBoard().acknowledge("pump-1", "a1", "Ana")  # no engine to tell
