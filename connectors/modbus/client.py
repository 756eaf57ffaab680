"""The Modbus connector (TCP, RTU over TCP, RTU on a serial line): runs the request plan each poll.

Only function codes 1 (read coils), 2 (read discrete inputs), 3 (read holding registers) and 4
(read input registers) are ever sent.

Timing: a poll has ``POLL_BUDGET`` of the machine's timeout to finish, so its batch is ready
before the runtime gives up on it. Each request may take what is left of that budget, or
``request_timeout`` if that is shorter. A request that gets no answer marks exactly its tags bad;
the connection is then reopened before the next request, because a late answer would otherwise
be taken for the answer to the next one. Requests the budget no longer covers are marked bad too.

Failures: a Modbus exception marks exactly that request's tags bad (exception 2 or 3 for a joined
read splits it into one read per tag from then on); a lost connection raises ``ConnectError``; a poll
in which no request was answered raises ``ReadTimeout``. Device quirks (pauses, closing after each
poll, one request per tag, smaller requests) come from the machine config.

Links: Modbus TCP goes through the connector's own lean client (``tcp_link.py``: a poll costs about half
the CPU it did through pymodbus, which is what lets a flat-out poll keep up with a raw pymodbus loop;
see README.md, Performance); ``tcp_client: pymodbus`` brings
pymodbus back for a device the lean client does not get along with. RTU framing, over TCP or a
serial line, always goes through pymodbus.

Serial lines: the port is opened with pymodbus's serial client (pyserial below it); a port that
does not open is diagnosed (missing, no permission, busy) in a worker thread, and before every
request the line stays silent for the inter-frame delay, because pymodbus keeps no RTU timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from typing import Any, cast

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from connectors.base import POLL_BUDGET
from connectors.cancellation import stray_cancellation_is_a_lost_link
from connectors.modbus.config import ModbusMachine
from connectors.modbus.decode import exception_reason
from connectors.modbus.plan import PlanOptions, ReadRequest, plan_requests, split_request
from connectors.modbus.responses import FAST_RESPONSES
from connectors.modbus.serial_port import SETTING_ERRORS, diagnose_open_failure, settings_refused
from connectors.modbus.tcp_link import ModbusTcpLink
from edge_agent.core.connection import ConnectionState
from edge_agent.core.errors import ConnectError, DecodeError, ReadTimeout
from edge_agent.core.samples import Batch, Quality, Sample, Value, now_ns

_log = logging.getLogger(__name__)

SPLIT_ON = frozenset({2, 3})
"""Exceptions to a joined read that mean "ask for less": illegal data address, illegal data value."""

Client = ModbusTcpLink | AsyncModbusTcpClient | AsyncModbusSerialClient

_READS: dict[str, str] = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}
"""The client method for each table: reads only (function codes 1 to 4)."""


def _good_sample_maker() -> Callable[[str, Value, int, str | None], Sample]:
    """A constructor of good samples that costs a third of ``Sample(...)``.

    A 125-register read of float32 values yields 62 samples, and the frozen dataclass's
    ``__init__`` (six ``object.__setattr__`` calls) was the largest cost of a poll left after
    decoding. Writing the slots through their descriptors builds the very same object (equal to
    ``Sample(tag, value, ts, Quality.GOOD, None, unit)``; tests/connectors/test_modbus_block.py
    checks it) without the per-field Python calls. Fails at import if ``Sample``'s fields change.
    """
    fields = tuple(field.name for field in dataclasses.fields(Sample))
    if fields != ("tag", "value", "timestamp_ns", "quality", "reason", "unit"):
        raise RuntimeError(f"Sample's fields changed to {fields}; update _good_sample_maker")
    tag_, value_, at_, quality_, reason_, unit_ = (vars(Sample)[name].__set__ for name in fields)
    new, good = object.__new__, Quality.GOOD

    def good_sample(tag: str, value: Value, timestamp_ns: int, unit: str | None) -> Sample:
        sample: Sample = new(Sample)
        tag_(sample, tag)
        value_(sample, value)
        at_(sample, timestamp_ns)
        quality_(sample, good)
        reason_(sample, None)
        unit_(sample, unit)
        return sample

    return good_sample


good_sample = _good_sample_maker()


class ModbusConnector:
    """Reads one Modbus machine (TCP or serial); see ``connectors/modbus/README.md``."""

    def __init__(self, config: ModbusMachine) -> None:
        self._config = config
        self._options = PlanOptions.of(config)
        self._client: Client | None = None
        self._state = ConnectionState.CLOSED
        self._opened = False  # connect() succeeded and close() was not called since
        self._reopen = False  # the link must be reopened before the next request (after a timeout)
        self._plan: list[ReadRequest] = plan_requests(config.tags, self._options)
        self._names = tuple(tag.name for tag in config.tags)  # the order of a batch's samples
        self._frame_gap = config.serial.frame_gap if config.serial is not None else 0.0
        self._quiet_since = 0.0  # loop time the line last fell silent (serial: the inter-frame delay counts from it)

    @property
    def machine_id(self) -> str:
        """The id of the machine this connector reads."""
        return self._config.id

    @property
    def state(self) -> ConnectionState:
        """The link's current state."""
        return self._state

    @property
    def requests_per_cycle(self) -> int:
        """How many Modbus reads one poll sends (the plan may split after a rejected joined read)."""
        return len(self._plan)

    @property
    def plan(self) -> tuple[ReadRequest, ...]:
        """The reads one poll sends, in order."""
        return tuple(self._plan)

    async def connect(self) -> None:
        """Open the link. Raises ``ConnectError`` when the machine cannot be reached."""
        try:
            with stray_cancellation_is_a_lost_link(self.machine_id):
                await self._connect()
        except ConnectError:
            self._state = ConnectionState.DOWN
            raise

    async def _connect(self) -> None:
        """Open the connection or serial port. Raises ``ConnectError`` when the device cannot be reached."""
        self._opened = False
        await self._drop_client()
        self._state = ConnectionState.CONNECTING
        try:
            await self._open()
        except ConnectError:
            self._state = ConnectionState.DOWN
            raise
        self._opened = True
        self._reopen = False
        self._state = ConnectionState.UP
        if self._config.close_after_cycle:
            await self._drop_client()

    def _new_client(self) -> Client:
        config = self._config
        if config.serial is None and config.framing == "tcp" and config.tcp_client == "lean":
            return ModbusTcpLink(config.host or "", config.port, config.effective_timeout)
        client = self._pymodbus_client()
        for response in FAST_RESPONSES:
            client.register(response)
        return client

    def _pymodbus_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """RTU framing, over TCP or a serial line, goes through pymodbus."""
        config = self._config
        if config.serial is not None:
            line = config.serial
            return AsyncModbusSerialClient(
                line.device,
                framer=FramerType.RTU,
                baudrate=line.baudrate,
                bytesize=line.bytesize,
                parity=line.parity,
                stopbits=line.stopbits,
                timeout=config.effective_timeout,
                retries=0,
                reconnect_delay=0,
                name=f"modbus-{config.id}",
            )
        return AsyncModbusTcpClient(
            config.host or "",
            port=config.port,
            framer=FramerType.RTU if config.framing == "rtu_over_tcp" else FramerType.SOCKET,
            timeout=config.effective_timeout,
            retries=0,
            reconnect_delay=0,  # the runtime reconnects with backoff; no hidden retries below it
            name=f"modbus-{config.id}",
        )

    async def _not_connected(self) -> str:
        """Why ``connect()`` came back without a connection (pymodbus only logs the cause)."""
        config = self._config
        if config.serial is not None:
            return await asyncio.to_thread(diagnose_open_failure, config.serial)
        return (
            f"cannot connect to {config.endpoint} within {config.effective_timeout:g} s "
            "(refused or no route). Check host, port and that the device accepts Modbus TCP"
        )

    async def _open(self) -> Client:
        config = self._config
        client = self._new_client()
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise ConnectError(config.id, f"cannot connect to {config.endpoint}: {exc}") from exc
        except SETTING_ERRORS as exc:  # a serial port that opened but refused its settings
            client.close()
            if config.serial is None:
                raise
            raise ConnectError(config.id, settings_refused(config.serial, exc)) from exc
        except BaseException:
            client.close()
            raise
        if not connected:
            client.close()
            raise ConnectError(config.id, await self._not_connected())
        self._client = client
        self._quiet_since = asyncio.get_running_loop().time()
        if config.pause_after_connect > 0:
            await asyncio.sleep(config.pause_after_connect)
        return client

    async def _link(self, deadline: float) -> Client:
        """The open client; reopens it after a timeout or when the device wants a connection per poll."""
        client = self._client
        if client is not None and client.connected and not self._reopen:
            return client
        if self._opened and (self._reopen or self._config.close_after_cycle):
            await self._drop_client()
            try:
                async with asyncio.timeout_at(deadline):
                    client = await self._open()
            except TimeoutError as exc:
                await self._drop_client()
                self._state = ConnectionState.DOWN
                raise ConnectError(self.machine_id, "reopening the connection took longer than the poll") from exc
            except ConnectError:
                self._state = ConnectionState.DOWN
                raise
            self._reopen = False
            return client
        if self._state is not ConnectionState.CLOSED:
            self._state = ConnectionState.DOWN
        raise ConnectError(self.machine_id, "not connected (connection closed or lost). The runtime reconnects")

    async def read(self) -> Batch:
        """One poll (see ``_read``); a stray cancellation from the library is a lost link."""
        try:
            with stray_cancellation_is_a_lost_link(self.machine_id):
                return await self._read()
        except ConnectError:
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.DOWN
            raise

    async def _read(self) -> Batch:
        """Run every request of the plan once and decode each tag."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.effective_timeout * POLL_BUDGET
        polled_at = now_ns()
        await self._link(deadline)
        try:
            return await self._poll(deadline, polled_at)
        finally:
            if self._config.close_after_cycle:
                await self._drop_client()

    async def _poll(self, deadline: float, polled_at: int) -> Batch:
        loop = asyncio.get_running_loop()
        samples: dict[str, Sample] = {}
        answered = timed_out = 0
        new_plan: list[ReadRequest] = []
        pause = self._config.pause_between_requests
        queue = list(self._plan)
        for position, request in enumerate(queue):
            if position and pause > 0 and loop.time() + pause < deadline:
                await asyncio.sleep(pause)
            if loop.time() >= deadline:
                reason = f"not read: the poll used up its time ({self._config.effective_timeout:g} s timeout)"
                for rest in queue[position:]:
                    self._bad(samples, rest, reason, now_ns())
                new_plan.extend(queue[position:])
                break
            result = await self._execute(request, deadline)
            received_at = now_ns()
            if isinstance(result, _Failed):
                timed_out += result.timed_out
                answered += not result.timed_out
                self._bad(samples, request, result.reason, received_at)
            elif isinstance(result, int):
                answered += 1
                parts = split_request(request, self._options) if result in SPLIT_ON else [request]
                if len(parts) > 1:
                    # The joined read may cover a hole in the device's map, or be longer than the device
                    # takes: read these tags one by one from now on, so only tags that really are
                    # missing come out bad.
                    _log.warning(
                        "machine %r: device rejected %s (%s); reading its %d tags in %d requests from now on",
                        self.machine_id,
                        request.describe(),
                        exception_reason(result),
                        len(request.tags),
                        len(parts),
                    )
                    new_plan.extend(parts)
                    for part in parts:
                        await self._run_single(part, deadline, samples)
                    continue
                self._bad(samples, request, exception_reason(result), received_at)
            else:
                answered += 1
                self._decode(samples, request, result, received_at)
            new_plan.append(request)
        self._plan = new_plan
        if answered == 0 and timed_out > 0:
            self._state = ConnectionState.DOWN
            raise ReadTimeout(
                self.machine_id,
                f"no answer from the device: {timed_out} of {len(queue)} request(s) went unanswered and the rest "
                f"did not fit in the poll's timeout ({self._config.effective_timeout:g} s)"
                if timed_out < len(queue)
                else f"no answer from the device to any of {timed_out} request(s)",
            )
        self._state = ConnectionState.UP
        ordered = tuple(map(samples.__getitem__, self._names))
        return Batch(self.machine_id, ordered, polled_at_ns=polled_at)

    async def _run_single(self, request: ReadRequest, deadline: float, into: dict[str, Sample]) -> None:
        loop = asyncio.get_running_loop()
        pause = self._config.pause_between_requests
        if pause > 0 and loop.time() + pause < deadline:
            await asyncio.sleep(pause)
        if loop.time() >= deadline:
            reason = f"not read: the poll used up its time ({self._config.effective_timeout:g} s timeout)"
            self._bad(into, request, reason, now_ns())
            return
        result = await self._execute(request, deadline)
        received_at = now_ns()
        if isinstance(result, _Failed):
            self._bad(into, request, result.reason, received_at)
        elif isinstance(result, int):
            self._bad(into, request, exception_reason(result), received_at)
        else:
            self._decode(into, request, result, received_at)

    async def _execute(self, request: ReadRequest, deadline: float) -> Sequence[int] | Sequence[bool] | int | _Failed:
        """The answer's registers or bits, the exception code of a Modbus exception, or ``_Failed``."""
        client = await self._link(deadline)
        call: Callable[..., Awaitable[Any]] = getattr(client, _READS[request.table])
        loop = asyncio.get_running_loop()
        if self._frame_gap > 0:
            silence = self._quiet_since + self._frame_gap - loop.time()
            if silence > 0:
                await asyncio.sleep(silence)
        limit = self._config.request_timeout
        until = deadline if limit is None else min(deadline, loop.time() + limit)
        try:
            async with asyncio.timeout_at(until):
                response = await call(request.start, count=request.count, device_id=request.unit_id)
        except TimeoutError:
            return self._no_answer()
        except ModbusIOException as exc:
            if not client.connected:
                self._state = ConnectionState.DOWN
                raise ConnectError(self.machine_id, f"connection lost while reading: {exc}") from exc
            return self._no_answer()
        except ConnectionException as exc:
            self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, f"connection lost while reading: {exc}") from exc
        except ModbusException as exc:
            return _Failed(f"request failed: {exc}")
        finally:
            self._quiet_since = loop.time()
        if response.isError():
            code: int = response.exception_code
            return code
        data: list[int] | list[bool] = response.bits if request.is_bits else response.registers
        if len(data) < request.count:
            return _Failed(f"device answered {len(data)} values, {request.count} were asked for")
        return data  # bits come padded to whole bytes: the decoder reads only the ones asked for

    def _no_answer(self) -> _Failed:
        """A request went unanswered: reopen the link before the next request (a late answer would confuse it)."""
        self._reopen = True
        limit = self._config.request_timeout
        within = limit if limit is not None else self._config.effective_timeout * POLL_BUDGET
        return _Failed(f"no answer within {within:g} s", timed_out=True)

    @staticmethod
    def _decode(
        into: dict[str, Sample], request: ReadRequest, data: Sequence[int] | Sequence[bool], received_at: int
    ) -> None:
        outcomes, all_values = request.decode(data)
        names = request.names
        if all_values:  # the usual case, without a look at each outcome
            values = cast("Sequence[Value]", outcomes)
            into.update(zip(names, map(good_sample, names, values, repeat(received_at), request.units), strict=True))
            return
        for name, unit, outcome in zip(names, request.units, outcomes, strict=True):
            if isinstance(outcome, DecodeError):
                into[name] = Sample.bad(name, str(outcome), received_at, unit)
            else:
                into[name] = good_sample(name, outcome, received_at, unit)

    @staticmethod
    def _bad(into: dict[str, Sample], request: ReadRequest, reason: str, received_at: int) -> None:
        for tag in request.tags:
            into[tag.name] = Sample.bad(tag.name, reason, received_at, tag.unit)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - close must never raise
                _log.debug("machine %r: error while closing the Modbus client", self.machine_id, exc_info=True)
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Close the connection. Idempotent; never raises."""
        self._opened = False
        self._reopen = False
        await self._drop_client()
        self._state = ConnectionState.CLOSED


class _Failed:
    """A request that got no usable answer; ``reason`` says why."""

    __slots__ = ("reason", "timed_out")

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        self.reason = reason
        self.timed_out = timed_out
