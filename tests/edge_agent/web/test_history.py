"""HistoryBuffer: bounded rings, 5 s means beyond the fine window, only good numbers drawn."""

from __future__ import annotations

import logging
import random
import time
import tracemalloc
from statistics import fmean

import numpy as np
import pytest

from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample
from edge_agent.core.sinks import Sink
from edge_agent.web.history import NS, HistoryBuffer
from tests.helpers.status_page import (
    Plant,
)
from tests.helpers.waiting import wait_until

ORIGIN = Origin("site", "area", "line", "m1")

# Sizes of what a tag and a machine keep, from the layout the HistoryBuffer docstring promises:
# a raw float64 per poll in the fine ring, a float32 mean and a one-byte time offset per bucket
# in the coarse ring, and the open bucket's sums (float64 values, int64 times, int32 count).
RAW = np.dtype(np.float64).itemsize
MEAN = np.dtype(np.float32).itemsize + np.dtype(np.uint8).itemsize
OPEN_BUCKET = np.dtype(np.float64).itemsize + np.dtype(np.int64).itemsize + np.dtype(np.int32).itemsize
TIME = np.dtype(np.int64).itemsize


def per_tag_bound(history: HistoryBuffer) -> int:
    return RAW * history.fine_points + MEAN * history.coarse_points + OPEN_BUCKET


def per_machine_bound(history: HistoryBuffer) -> int:
    return TIME * (history.fine_points + history.coarse_points)


pytestmark = pytest.mark.asyncio(loop_scope="module")


def batch(t_s: float, **values: float | bool | str | None) -> Batch:
    t = int(t_s * NS)
    samples = tuple(
        Sample.bad(tag, "device busy", t) if value is None else Sample(tag, value, t, unit="bar")
        for tag, value in values.items()
    )
    return Batch("m1", samples, polled_at_ns=t)


def poll(machine: str, t_s: float, **values: float | None) -> Batch:
    """One poll of ``machine``: a tag left out was not in the poll, None is a bad reading."""
    return Batch(machine, batch(t_s, **values).samples, polled_at_ns=int(t_s * NS))


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
    assert history.memory_bytes == bytes_after_two_hours <= per_tag_bound(history) + per_machine_bound(history)
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
    await history.submit(batch(now + 1, p=5.0, q=6.0), ORIGIN)  # the same poll again, with a tag it lacked
    assert history.series("m1", "p").values.tolist() == [1.0, 4.0]
    assert history.series("m1", "q").values.tolist() == [6.0]
    assert history.series("m1", "q").times_ns.tolist() == [int((now + 1) * NS)]
    assert history.points_total == 3


async def test_series_beyond_the_cap_are_counted_not_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    history = HistoryBuffer(max_series=2)
    now = time.time()
    await history.submit(batch(now, a=1.0, b=2.0, c=3.0), ORIGIN)
    await history.submit(batch(now + 1, a=1.0, b=2.0, c=4.0), ORIGIN)
    await history.submit(poll("m2", now + 1, x=5.0), Origin("site", "area", "line", "m2"))
    assert history.series_count == 2
    assert history.rejected_series == 3  # every reading that found no room
    assert not history.has_series("m1", "c")
    assert not history.has_series("m2", "x")
    assert history.memory_bytes == 2 * per_tag_bound(history) + per_machine_bound(history)  # nothing for m2
    assert history.latest("m1")["c"].value == 4.0  # the newest value is still shown
    assert history.points_total == 4
    warnings = [r for r in caplog.records if "max_series" in r.getMessage()]
    assert len(warnings) == 1
    assert "m1.c" in warnings[0].getMessage()


async def test_machine_state_is_kept_with_reason_and_since() -> None:
    history = HistoryBuffer()
    before = time.time_ns()
    history.machine_state_changed(ORIGIN, "down", "connection refused")
    state = history.state("m1")
    assert state is not None
    assert (state.state, state.reason) == ("down", "connection refused")
    assert before <= state.since_ns <= time.time_ns()


async def test_fills_from_the_real_agent(plant: Plant) -> None:
    await wait_until(lambda: len(plant.history.series("pump-1", "flow")) >= 5, 10, "5 flow points")
    served = {v for _, v in plant.sim.served("opcua", "pump-1", "flow")}
    assert set(plant.history.series("pump-1", "flow").values.tolist()) <= served
    state = plant.history.state("press-1")
    assert state is not None
    assert state.state == "up"
    assert set(plant.history.tags("press-1")) == set(plant.tags("press-1"))


async def test_a_tag_missing_from_a_poll_or_bad_is_a_gap_and_its_siblings_draw_on() -> None:
    history = HistoryBuffer(window=600, fine_points=100, coarse_step=5)
    start = time.time() - 20
    missing, bad = (3, 4), 6
    for i in range(10):
        values: dict[str, float | None] = {"a": float(i), "b": 10.0 + i}
        if i in missing:
            del values["b"]
        if i == bad:
            values["b"] = None
        await history.submit(poll("m1", start + i, **values), ORIGIN)
    assert history.series("m1", "a").values.tolist() == [float(i) for i in range(10)]
    drawn = [i for i in range(10) if i not in (*missing, bad)]
    b = history.series("m1", "b")
    assert b.values.tolist() == [10.0 + i for i in drawn]
    assert b.times_ns.tolist() == [int((start + i) * NS) for i in drawn]
    assert history.points_total == 10 + len(drawn)


async def test_polls_with_nothing_to_draw_do_not_push_recent_points_out() -> None:
    history = HistoryBuffer(fine_points=3)
    start = time.time() - 20
    for i in range(3):
        await history.submit(poll("m1", start + i, a=float(i)), ORIGIN)
    for i in range(3, 10):  # the machine answers, but every reading is bad
        await history.submit(poll("m1", start + i, a=None), ORIGIN)
    assert history.series("m1", "a").values.tolist() == [0.0, 1.0, 2.0]
    assert history.latest("m1")["a"].quality is Quality.BAD


async def test_a_reading_is_drawn_once_where_the_means_meet_the_raw_points() -> None:
    """b's one reading in a 2 s bucket is both that bucket's mean and the oldest raw point."""
    history = HistoryBuffer(window=60, fine_points=4, coarse_step=2)
    start = (time.time_ns() // NS - 30) // 2 * 2  # on a bucket boundary
    await history.submit(poll("m1", start, a=0.0), ORIGIN)
    await history.submit(poll("m1", start + 0.5, a=1.0, b=5.0), ORIGIN)
    for t, a in ((1.0, 2.0), (2.0, 3.0), (2.5, 4.0)):  # the poll at +2 s closes the first bucket
        await history.submit(poll("m1", start + t, a=a), ORIGIN)
    b = history.series("m1", "b")
    assert b.values.tolist() == [5.0]
    assert b.times_ns.tolist() == [int((start + 0.5) * NS)]
    assert history.series("m1", "a").values.tolist() == [1.0, 2.0, 3.0, 4.0]  # raw since +0.5 s


def drawn(batch: Batch) -> dict[str, float]:
    return {s.tag: float(s.value) for s in batch.samples if s.quality is Quality.GOOD and s.value is not None}


def expected_trend(
    polls: list[Batch], tag: str, history: HistoryBuffer, since_ns: int
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The trend of ``tag`` from the polls alone, and the points so near a boundary they may go either way.

    The raw readings of the machine's last ``fine_points`` polls that had something to draw;
    before them, one mean per ``coarse_step`` bucket (the open bucket excepted) at the mean time
    of the tag's own readings in it, kept to 1/255 of the bucket.
    """
    recorded = [(b.polled_at_ns, drawn(b)) for b in polls if drawn(b)]
    fine = recorded[-history.fine_points :]
    fine_from = fine[0][0]
    step = history.step_ns
    buckets: dict[int, list[tuple[int, float]]] = {}
    for t, values in recorded:
        if t // step != recorded[-1][0] // step and tag in values:
            buckets.setdefault(t // step, []).append((t, values[tag]))
    sure: list[tuple[int, float]] = []
    unsure: list[tuple[int, float]] = []
    for readings in buckets.values():
        point = (sum(t for t, _ in readings) // len(readings), fmean(v for _, v in readings))
        if min(abs(point[0] - since_ns), abs(point[0] - fine_from)) <= step // 255:
            unsure.append(point)
        elif since_ns <= point[0] < fine_from:
            sure.append(point)
    sure += [(t, values[tag]) for t, values in fine if tag in values and t >= since_ns]
    return sure, unsure


def near(t: int, v: float, points: list[tuple[int, float]], history: HistoryBuffer) -> bool:
    return any(abs(t - pt) <= history.step_ns // 255 and v == pytest.approx(pv, rel=1e-6) for pt, pv in points)


async def test_rings_wrap_and_every_point_is_a_reading_or_the_mean_of_its_bucket() -> None:
    """Many times around both rings, with gaps, bad readings, a late tag and one that goes away."""
    rng = random.Random(7)
    history = HistoryBuffer(window=30, fine_points=7, coarse_step=2)
    tags = ("a", "b", "late", "gone", "flaky")
    t_ns = (time.time_ns() - 600 * NS) // NS * NS
    polls: list[Batch] = []
    checked = 0
    for i in range(300):
        t_ns += rng.choice((NS // 2, NS, 3 * NS // 2, 7 * NS // 2))
        values: dict[str, float | None] = {tag: rng.uniform(-50, 50) for tag in tags}
        values["a"] = None if rng.random() < 0.05 else values["a"]
        values["flaky"] = None if rng.random() < 0.4 else values["flaky"]
        values = {tag: v for tag, v in values.items() if not (tag == "b" and rng.random() < 0.3)}
        values.pop("late") if i < 100 else None
        values.pop("gone") if i >= 180 else None
        if rng.random() < 0.05:
            values = dict.fromkeys(values)  # every reading of the poll bad
        polls.append(Batch("m1", poll("m1", 0, **values).samples, polled_at_ns=t_ns))
        await history.submit(polls[-1], ORIGIN)
        if i % 23 == 22 or i == 299:
            now_ns = t_ns + rng.randrange(NS)
            for tag, seconds in ((tag, seconds) for tag in tags for seconds in (None, 10.0)):
                since = now_ns - (history.window_ns if seconds is None else int(seconds * NS))
                sure, unsure = expected_trend(polls, tag, history, since)
                series = history.series("m1", tag, seconds, now_ns=now_ns)
                got = [
                    (t, v)
                    for t, v in zip(series.times_ns.tolist(), series.values.tolist(), strict=True)
                    if not (near(t, v, unsure, history) and not near(t, v, sure, history))
                ]
                assert len(got) == len(sure), (i, tag, seconds, [t - since for t, _ in got], sure, unsure)
                for (t, v), (want_t, want_v) in zip(got, sure, strict=True):
                    assert abs(t - want_t) <= history.step_ns // 255, (i, tag, t, want_t)
                    assert v == pytest.approx(want_v, rel=1e-6), (i, tag, t)
                checked += len(got)
    assert checked > 500
    assert history.points_total == sum(len(drawn(b)) for b in polls)
    assert history.series_count == len(tags)


async def test_a_late_tag_draws_from_its_first_reading_and_costs_one_tag_of_memory() -> None:
    history = HistoryBuffer(window=120, fine_points=4, coarse_step=5)
    start = (time.time_ns() // NS - 60) // 5 * 5  # on a bucket boundary, a minute ago
    for i in range(20):
        await history.submit(poll("m1", start + i, a=float(i), b=-float(i)), ORIGIN)
    before = history.memory_bytes
    a_before = history.series("m1", "a")
    for i in range(20, 40):  # "late" first read at start+22: two polls into a 5 s bucket
        values = {"a": float(i), "b": -float(i)} | ({"late": 100.0 + i} if i >= 22 else {})
        await history.submit(poll("m1", start + i, **values), ORIGIN)
    assert history.memory_bytes - before <= per_tag_bound(history)
    late = history.series("m1", "late")
    assert late.times_ns[0] >= (start + 22) * NS  # its first mean is not drawn before it existed
    assert late.values[0] == pytest.approx(fmean([122.0, 123.0, 124.0]))
    assert late.values[-4:].tolist() == [136.0, 137.0, 138.0, 139.0]
    a = history.series("m1", "a")
    assert a.times_ns[: len(a_before) - 4].tolist() == a_before.times_ns[:-4].tolist()  # siblings unchanged
    assert a.values[-4:].tolist() == [36.0, 37.0, 38.0, 39.0]


async def test_a_tag_that_goes_away_keeps_its_trend_until_it_ages_out() -> None:
    history = HistoryBuffer(window=60, fine_points=4, coarse_step=5)
    start = (time.time_ns() // NS - 200) // 5 * 5
    for i in range(30):
        await history.submit(poll("m1", start + i, a=float(i), **({"gone": 50.0 + i} if i < 12 else {})), ORIGIN)
    now = (start + 30) * NS
    gone = history.series("m1", "gone", now_ns=now)
    assert gone.times_ns[-1] < (start + 12) * NS  # nothing drawn after its last reading
    assert gone.values[-1] == pytest.approx(fmean([60.0, 61.0]))  # the mean of its last bucket's readings
    assert len(gone) == 3  # buckets 0-4, 5-9, 10-11
    later = now + history.window_ns
    assert len(history.series("m1", "gone", now_ns=later)) == 0
    assert history.has_series("m1", "gone")


async def test_memory_per_tag_is_what_the_layout_says_and_what_is_really_allocated() -> None:
    machines, tags = 20, 50
    history = HistoryBuffer()
    now = time.time_ns()
    polls = [
        Batch(f"m{m:02d}", tuple(Sample(f"t{j}", float(j), now) for j in range(tags)), polled_at_ns=now + k * NS)
        for k in range(2)
        for m in range(machines)
    ]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for b in polls:
            await history.submit(b, Origin("site", "area", "line", b.machine))
        allocated = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    count = machines * tags
    assert history.series_count == count
    bound = per_tag_bound(history) * count + per_machine_bound(history) * machines
    assert history.memory_bytes <= bound
    # truthful: what was really allocated is the rings plus a few dict entries per tag
    assert history.memory_bytes <= allocated <= history.memory_bytes + 300 * count
    # each tag keeping its own int64 times next to float64 values took 16 bytes a point
    assert history.memory_bytes < 0.5 * count * 16 * (history.fine_points + history.coarse_points)


async def test_the_clock_going_back_restarts_the_machines_trends_once(caplog: pytest.LogCaptureFixture) -> None:
    history = HistoryBuffer(window=600)
    now = time.time()
    for i in range(5):
        await history.submit(poll("m1", now - 10 + i, a=float(i), b=float(i)), ORIGIN)
    await history.submit(poll("m1", now - 12, a=99.0), ORIGIN)  # a little back: that poll is not drawn
    assert history.series("m1", "a").values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert history.latest("m1")["a"].value == 99.0
    with caplog.at_level(logging.WARNING, logger="edge_agent.web.history"):
        await history.submit(poll("m1", now - 7200, a=7.0, b=8.0), ORIGIN)  # more than the window back
    warnings = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert len(warnings) == 1
    assert "m1" in warnings[0]
    window = history.window_ns
    assert history.series("m1", "a", now_ns=int((now - 7200) * NS)).values.tolist() == [7.0]
    assert history.series("m1", "b", now_ns=int((now - 7200) * NS) + window // 2).values.tolist() == [8.0]
