"""Per-tag staleness: values that stop arriving while the server still answers.

A frozen gateway or a PLC that stopped updating keeps its session alive; nothing fails, the
values just stop changing. With ``max_age`` on a tag, the agent must say so per tag: poll mode
sees the old source timestamp, subscribe mode sees no change coming at all. The simulator's
``stale`` protocol fault freezes one machine's values and timestamps exactly so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from connectors.opcua.client import OpcUaConnector
from connectors.opcua.convert import silence_of
from edge_agent.core.origin import Origin
from edge_agent.core.samples import Batch, Quality, Sample
from edge_agent.runtime.poller import MachinePoller
from simulators import Simulation
from tests.helpers.simconfig import opcua_machine
from tests.helpers.waiting import wait_until

MAX_AGE = 1.0
NOW = 1_800_000_000_000_000_000


def test_a_quiet_tag_is_repeated_as_uncertain_with_the_reason() -> None:
    last = Sample("flow", 3.5, NOW - 10**9, Quality.GOOD, None, "m3/h")
    assert silence_of(last, NOW - 5 * 10**8, NOW, MAX_AGE) is None  # quiet for 0.5 s: fine
    stale = silence_of(last, NOW - 2_500_000_000, NOW, MAX_AGE)
    assert stale == Sample(
        "flow", 3.5, last.timestamp_ns, Quality.UNCERTAIN, "stale: no change reported for 2.5 s (max_age 1 s)", "m3/h"
    )


def test_no_max_age_or_a_bad_last_sample_says_nothing_more() -> None:
    good = Sample("flow", 3.5, NOW, Quality.GOOD)
    assert silence_of(good, NOW - 60 * 10**9, NOW, None) is None
    bad = Sample.bad("flow", "BadSensorFailure", NOW)
    assert silence_of(bad, NOW - 60 * 10**9, NOW, MAX_AGE) is None  # its own reason says more


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with Simulation(seed=1, update_interval=0.1, modbus_port=None) as simulation:
        yield simulation
    assert simulation.write_count == 0


async def reports(connector: OpcUaConnector, tags: set[str], stale: bool, within: float) -> dict[str, Sample]:
    """Read every 0.25 s until each of ``tags`` was last reported stale (or good); its last samples."""
    latest: dict[str, Sample] = {}

    def fits(sample: Sample | None) -> bool:
        if sample is None:
            return False
        if stale:
            return sample.quality is Quality.UNCERTAIN and (sample.reason or "").startswith("stale: ")
        return sample.quality is Quality.GOOD

    async def all_fit() -> bool:
        for sample in (await connector.read()).samples:
            latest[sample.tag] = sample
        return all(fits(latest.get(tag)) for tag in tags)

    await wait_until(all_fit, within, f"every tag {'stale' if stale else 'good'}", interval=0.25, detail=lambda: latest)
    return latest


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_frozen_values_are_reported_stale_per_tag_and_good_again(sim: Simulation, mode: str) -> None:
    machine = "pump-1"
    signals = [name for name, _ in sim.signals(machine)]
    config = opcua_machine(
        sim,
        machine,
        mode=mode,
        interval="250ms",
        connect_timeout="5s",
        security={"policy": "None", "mode": "None"},
    )
    config = config.model_copy(
        update={"tags": [tag.model_copy(update={"max_age": MAX_AGE}) for tag in config.tags]}
    )  # every signal changes at every update: quiet for a second means frozen
    connector = OpcUaConnector(config)
    await connector.connect()
    try:
        await reports(connector, set(signals), stale=False, within=10)
        sim.inject_protocol_fault("opcua", "stale", machine)
        frozen = await reports(connector, set(signals), stale=True, within=MAX_AGE + 6)
        for name in signals:
            last_served = sim.served("opcua", machine, name)[-1]
            assert (frozen[name].timestamp_ns, frozen[name].value) == last_served  # the frozen value, its own stamp
        sim.clear_protocol_faults("opcua", machine)
        await reports(connector, set(signals), stale=False, within=10)
    finally:
        await connector.close()


@dataclass
class BatchRecorder:
    """A sink that keeps every batch the poller hands over."""

    name: str = "recorder"
    batches: list[Batch] = field(default_factory=list)

    async def start(self) -> None:
        return None

    async def submit(self, batch: Batch, origin: Origin) -> None:
        self.batches.append(batch)

    def machine_state_changed(self, origin: Origin, state: str, reason: str | None) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_subscribe_mode_hands_sinks_no_empty_batch_while_nothing_changes(sim: Simulation) -> None:
    """No change, no message: a frozen machine in subscribe mode costs no MQTT message, outbox entry or write."""
    machine = "pump-1"
    config = opcua_machine(sim, machine, mode="subscribe", interval="100ms", connect_timeout="5s")
    recorder = BatchRecorder()
    poller = MachinePoller(config, Origin("site", "area", "line", machine), [recorder])
    task = asyncio.create_task(poller.run(), name=f"poll:{machine}")
    try:
        await wait_until(lambda: len(recorder.batches) >= 3, 15, "changes arrive from the simulator")
        sim.inject_protocol_fault("opcua", "stale", machine)
        polls = poller.stats.polls
        await wait_until(lambda: poller.stats.polls >= polls + 10, 15, "ten more polls of the frozen machine")
        settled, polls = len(recorder.batches), poller.stats.polls  # changes in flight at the freeze are in
        await wait_until(lambda: poller.stats.polls >= polls + 10, 15, "ten more polls of the frozen machine")
        assert len(recorder.batches) == settled, "polls without a change handed batches to the sinks"
        sim.clear_protocol_faults("opcua", machine)
        await wait_until(lambda: len(recorder.batches) > settled, 15, "changes arrive again")
        assert all(batch.samples for batch in recorder.batches), "an empty batch reached the sinks"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
