"""HistoryBuffer: bounded rings, 5 s means beyond the fine window, only good numbers drawn."""

from __future__ import annotations

import time

import pytest

from edge_agent.history import NS, HistoryBuffer
from edge_agent.payloads import Origin
from edge_agent.samples import Batch, Quality, Sample
from edge_agent.sinks import Sink
from tests.waiting import eventually
from tests.web.conftest import Plant

ORIGIN = Origin("site", "area", "line", "m1")

pytestmark = pytest.mark.asyncio(loop_scope="module")


def batch(t_s: float, **values: float | bool | str | None) -> Batch:
    t = int(t_s * NS)
    samples = tuple(
        Sample.bad(tag, "device busy", t) if value is None else Sample(tag, value, t, unit="bar")
        for tag, value in values.items()
    )
    return Batch("m1", samples, polled_at_ns=t)


async def test_it_is_a_sink_with_an_idempotent_close() -> None:
    sink: Sink = HistoryBuffer()  # mypy checks the protocol
    await sink.start()
    await sink.close()
    await sink.close()
    assert sink.name == "history"


async def test_memory_is_bounded_and_old_points_are_downsampled_to_5s_means() -> None:
    history = HistoryBuffer(window=3600, fine_points=60, coarse_step=5)
    start = int(time.time()) // 5 * 5 - 7200  # on a bucket boundary
    for i in range(7200):  # two hours at 1 Hz
        await history.submit(batch(start + i, p=float(i)), ORIGIN)
    bytes_after_two_hours = history.memory_bytes
    series = history.series("m1", "p")
    assert history.memory_bytes == bytes_after_two_hours == 16 * (60 + 721)
    # the last 60 points are raw, the rest of the hour is one mean per 5 s
    assert list(series.values[-60:]) == [float(i) for i in range(7140, 7200)]
    coarse = series.values[:-60]
    assert len(coarse) == pytest.approx((3600 - 60) / 5, abs=2)
    assert coarse[-1] == pytest.approx(7137.0)  # mean of 7135..7139
    assert all(b > a for a, b in zip(series.times_ns, series.times_ns[1:], strict=False))
    assert series.times_ns[0] >= (time.time() - 3600) * NS - 5 * NS


async def test_only_good_finite_numbers_are_drawn_but_every_latest_sample_is_kept() -> None:
    history = HistoryBuffer()
    now = time.time()
    await history.submit(batch(now, a=1.5, b=None, c="auto", d=True, e=float("nan")), ORIGIN)
    assert [t for t in "abcde" if history.has_series("m1", t)] == ["a", "d"]
    assert history.series("m1", "d").values.tolist() == [1.0]
    latest = history.latest("m1")
    assert latest["b"].quality is Quality.BAD
    assert latest["b"].reason == "device busy"
    assert latest["c"].value == "auto"


async def test_points_are_placed_on_the_agents_clock_so_a_machine_with_a_wrong_clock_still_draws() -> None:
    history = HistoryBuffer()
    now = time.time()
    two_hours_late = Sample("p", 1.0, int((now - 7200) * NS))
    await history.submit(Batch("m1", (two_hours_late,), polled_at_ns=int(now * NS)), ORIGIN)
    series = history.series("m1", "p")
    assert series.values.tolist() == [1.0]
    assert series.times_ns.tolist() == [int(now * NS)]
    assert history.latest("m1")["p"].timestamp_ns == two_hours_late.timestamp_ns  # the reading keeps its own


async def test_the_same_instant_twice_is_one_point() -> None:
    history = HistoryBuffer()
    now = time.time()
    for value in (1.0, 2.0, 3.0):
        await history.submit(batch(now, p=value), ORIGIN)
    assert history.series("m1", "p").values.tolist() == [1.0]
    await history.submit(batch(now + 1, p=4.0), ORIGIN)
    assert history.series("m1", "p").values.tolist() == [1.0, 4.0]


async def test_series_beyond_the_cap_are_counted_not_kept() -> None:
    history = HistoryBuffer(max_series=2)
    await history.submit(batch(time.time(), a=1.0, b=2.0, c=3.0), ORIGIN)
    assert history.series_count == 2
    assert history.rejected_series == 1
    assert history.latest("m1")["c"].value == 3.0  # the newest value is still shown


async def test_machine_state_is_kept_with_reason_and_since() -> None:
    history = HistoryBuffer()
    before = time.time_ns()
    history.machine_state_changed(ORIGIN, "down", "connection refused")
    state = history.state("m1")
    assert state is not None
    assert (state.state, state.reason) == ("down", "connection refused")
    assert before <= state.since_ns <= time.time_ns()


async def test_fills_from_the_real_agent(plant: Plant) -> None:
    await eventually(lambda: len(plant.history.series("pump-1", "flow")) >= 5, 10, "5 flow points")
    served = {v for _, v in plant.sim.served("opcua", "pump-1", "flow")}
    assert set(plant.history.series("pump-1", "flow").values.tolist()) <= served
    state = plant.history.state("press-1")
    assert state is not None
    assert state.state == "up"
    assert set(plant.history.tags("press-1")) == set(plant.tags("press-1"))
