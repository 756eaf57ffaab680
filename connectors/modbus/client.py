"""The Modbus TCP connector: runs the request plan each poll and turns the answers into a ``Batch``.

Only function codes 3 (read holding registers) and 4 (read input registers) are ever sent.
A Modbus exception or a missing answer for one request marks exactly that request's tags bad;
a lost connection raises ``ConnectError``; a poll in which no request was answered raises
``ReadTimeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from connectors.base import ConnectionState
from connectors.modbus.config import ModbusMachine
from connectors.modbus.decode import DecodeError, decode_value, exception_reason
from connectors.modbus.plan import ReadRequest, plan_requests, split_request
from edge_agent.errors import ConnectError, ReadTimeout
from edge_agent.samples import Batch, Sample, now_ns

_log = logging.getLogger(__name__)

ILLEGAL_DATA_ADDRESS = 2


class ModbusConnector:
    """Reads one Modbus TCP machine; see ``connectors/modbus/README.md``."""

    def __init__(self, config: ModbusMachine) -> None:
        self._config = config
        self._client: AsyncModbusTcpClient | None = None
        self._state = ConnectionState.CLOSED
        self._plan: list[ReadRequest] = plan_requests(config.tags, max_gap=config.max_gap)

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
        """Open the TCP connection. Raises ``ConnectError`` when the device cannot be reached."""
        await self._drop_client()
        self._state = ConnectionState.CONNECTING
        config = self._config
        client = AsyncModbusTcpClient(
            config.host,
            port=config.port,
            timeout=config.effective_timeout,
            retries=0,
            reconnect_delay=0,  # the runtime reconnects with backoff; no hidden retries below it
            name=f"modbus-{config.id}",
        )
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            self._state = ConnectionState.DOWN
            raise ConnectError(config.id, f"cannot connect to {config.host}:{config.port}: {exc}") from exc
        if not connected:
            client.close()
            self._state = ConnectionState.DOWN
            raise ConnectError(
                config.id,
                f"cannot connect to {config.host}:{config.port} within {config.effective_timeout:g} s "
                "(refused or no route). Check host, port and that the device accepts Modbus TCP",
            )
        self._client = client
        self._state = ConnectionState.UP

    async def read(self) -> Batch:
        """Run every request of the plan once and decode each tag."""
        client = self._client
        if client is None or not client.connected:
            if self._state is not ConnectionState.CLOSED:
                self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, "not connected (connection closed or lost). The runtime reconnects")
        polled_at = now_ns()
        samples: list[Sample] = []
        answered = 0
        timed_out = 0
        plan = list(self._plan)
        new_plan: list[ReadRequest] = []
        for request in plan:
            result = await self._execute(client, request)
            received_at = now_ns()
            if isinstance(result, _Failed):
                timed_out += result.timed_out
                answered += not result.timed_out
                samples.extend(self._bad(request, result.reason, received_at))
                new_plan.append(request)
                continue
            answered += 1
            if isinstance(result, int):
                if result == ILLEGAL_DATA_ADDRESS and len(request.tags) > 1:
                    # The joined read may cover a hole in the device's map: read these tags one by one
                    # from now on, so only the tags that really are missing come out bad.
                    parts = split_request(request)
                    if len(parts) > 1:
                        _log.warning(
                            "machine %r: device rejected %s registers %d-%d (%s); reading these %d tags "
                            "in %d separate requests from now on",
                            self.machine_id,
                            request.table,
                            request.start,
                            request.start + request.count - 1,
                            exception_reason(result),
                            len(request.tags),
                            len(parts),
                        )
                        new_plan.extend(parts)
                        for part in parts:
                            samples.extend(await self._run_single(client, part))
                        continue
                samples.extend(self._bad(request, exception_reason(result), received_at))
                new_plan.append(request)
                continue
            samples.extend(self._decode(request, result, received_at))
            new_plan.append(request)
        self._plan = new_plan
        if answered == 0 and timed_out > 0:
            self._state = ConnectionState.DOWN
            raise ReadTimeout(
                self.machine_id,
                f"no answer to any of {timed_out} request(s) within {self._config.effective_timeout:g} s",
            )
        self._state = ConnectionState.UP
        by_name = {sample.tag: sample for sample in samples}
        ordered = tuple(by_name[tag.name] for tag in self._config.tags)
        return Batch(self.machine_id, ordered, polled_at_ns=polled_at)

    async def _run_single(self, client: AsyncModbusTcpClient, request: ReadRequest) -> list[Sample]:
        result = await self._execute(client, request)
        received_at = now_ns()
        if isinstance(result, _Failed):
            return self._bad(request, result.reason, received_at)
        if isinstance(result, int):
            return self._bad(request, exception_reason(result), received_at)
        return self._decode(request, result, received_at)

    async def _execute(self, client: AsyncModbusTcpClient, request: ReadRequest) -> Sequence[int] | int | _Failed:
        """Registers on success, the exception code for a Modbus exception, ``_Failed`` otherwise."""
        call: Callable[..., Awaitable[Any]] = (
            client.read_holding_registers if request.table == "holding" else client.read_input_registers
        )
        try:
            response = await call(request.start, count=request.count, device_id=self._config.unit_id)
        except ModbusIOException as exc:
            if not client.connected:
                self._state = ConnectionState.DOWN
                raise ConnectError(self.machine_id, f"connection lost while reading: {exc}") from exc
            return _Failed(f"no answer within {self._config.effective_timeout:g} s", timed_out=True)
        except ConnectionException as exc:
            self._state = ConnectionState.DOWN
            raise ConnectError(self.machine_id, f"connection lost while reading: {exc}") from exc
        except ModbusException as exc:
            return _Failed(f"request failed: {exc}")
        if response.isError():
            code: int = response.exception_code
            return code
        registers: list[int] = list(response.registers)
        if len(registers) < request.count:
            return _Failed(f"device answered {len(registers)} registers, {request.count} were asked for")
        return registers

    def _decode(self, request: ReadRequest, registers: Sequence[int], received_at: int) -> list[Sample]:
        samples = []
        for tag in request.tags:
            try:
                value = decode_value(
                    request.registers_of(tag, registers), tag.type, tag.byte_order, tag.scale, tag.offset
                )
            except DecodeError as exc:
                samples.append(Sample.bad(tag.name, str(exc), received_at, tag.unit))
                continue
            samples.append(Sample(tag.name, value, received_at, unit=tag.unit))
        return samples

    @staticmethod
    def _bad(request: ReadRequest, reason: str, received_at: int) -> list[Sample]:
        return [Sample.bad(tag.name, reason, received_at, tag.unit) for tag in request.tags]

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
        await self._drop_client()
        self._state = ConnectionState.CLOSED


class _Failed:
    """A request that got no usable answer; ``reason`` says why."""

    __slots__ = ("reason", "timed_out")

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        self.reason = reason
        self.timed_out = timed_out
