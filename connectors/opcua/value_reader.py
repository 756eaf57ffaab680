"""The Read service for many nodes at once: chunked to what the server accepts, failures translated.

Servers announce MaxNodesPerRead, configs may set a lower ``max_nodes_per_read``, and some servers
enforce less than they announce. ``ValueReader`` keeps the three limits, reads in chunks of the
least of them, halves the chunk when the server says BadTooManyOperations, and turns the library's
failures into ``ReadTimeout`` / ``ConnectError`` / ``DeviceError`` for the connector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.opcua.deadline import within
from connectors.opcua.session import LINK_ERRORS, describe
from edge_agent.core.errors import ConnectError, DeviceError, ReadTimeout

_LOST_LINK_CODES = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadServerHalted,
        StatusCodes.BadShutdown,
        StatusCodes.BadCommunicationError,
    }
)
"""Service results that mean the session or channel is gone: reconnect rather than retry."""


class ValueReader:
    """Reads the Value attribute of many nodes of one machine's server, in as few Reads as it accepts."""

    def __init__(
        self,
        machine_id: str,
        configured_max: int | None,
        *,
        warn_once: Callable[[str], None],
        on_link_down: Callable[[], None],
    ) -> None:
        """``warn_once`` logs a config problem once; ``on_link_down`` runs when a failure means the link is gone."""
        self._machine_id = machine_id
        self._configured_max = configured_max
        self._warn_once = warn_once
        self._on_link_down = on_link_down
        self.server_max_nodes_per_read = 0
        """The server's MaxNodesPerRead as read at the last connect (0: none announced)."""
        self._learned_max_nodes = 0  # set when the server refuses a Read as too large

    @property
    def nodes_per_read(self) -> int:
        """Nodes per Read request (0: all): the least of the server's MaxNodesPerRead, the config's
        ``max_nodes_per_read`` and what the server turned out to accept."""
        limits = [n for n in (self.server_max_nodes_per_read, self._configured_max, self._learned_max_nodes) if n]
        return min(limits) if limits else 0

    async def read(
        self,
        client: Client,
        node_ids: Sequence[ua.NodeId],
        timestamps: ua.TimestampsToReturn,
        time_limit: float,
    ) -> list[ua.DataValue]:
        """Read the Value attribute of ``node_ids``, chunked by ``nodes_per_read``, translating failures."""
        results: list[ua.DataValue] = []
        pending = list(node_ids)
        try:
            async with within(time_limit):
                while pending:
                    size = self.nodes_per_read or len(pending)
                    chunk = pending[:size]
                    try:
                        answer = await client.uaclient.read(_read_parameters(chunk, timestamps))
                    except UaStatusCodeError as exc:
                        if exc.code != StatusCodes.BadTooManyOperations or len(chunk) == 1:
                            raise
                        # The server enforces a lower limit than it announces: halve the chunk and go on.
                        self._learned_max_nodes = len(chunk) // 2
                        self._warn_once(
                            f"the server refused a Read of {len(chunk)} nodes (BadTooManyOperations), more than "
                            "it announces; reading fewer nodes per request from now on. Fix: set "
                            "max_nodes_per_read to what the server accepts"
                        )
                        continue
                    if len(answer) != len(chunk):
                        raise DeviceError(
                            self._machine_id,
                            f"the server answered {len(answer)} results for {len(chunk)} nodes",
                        )
                    results.extend(answer)
                    pending = pending[len(chunk) :]
        except TimeoutError as exc:
            self._on_link_down()
            raise ReadTimeout(self._machine_id, f"no answer to Read within {time_limit:g} s") from exc
        except UaStatusCodeError as exc:
            self._on_link_down()
            if exc.code in _LOST_LINK_CODES:
                raise ConnectError(self._machine_id, f"session lost: {describe(exc)}") from exc
            raise DeviceError(self._machine_id, f"the server refused the Read: {describe(exc)}") from exc
        except LINK_ERRORS as exc:
            self._on_link_down()
            raise ConnectError(self._machine_id, f"connection lost: {describe(exc)}") from exc
        return results


def _read_parameters(node_ids: Sequence[ua.NodeId], timestamps: ua.TimestampsToReturn) -> ua.ReadParameters:
    params = ua.ReadParameters()
    params.MaxAge = 0
    params.TimestampsToReturn = timestamps
    params.NodesToRead = [ua.ReadValueId(NodeId=node_id, AttributeId=AttributeIds.Value) for node_id in node_ids]
    return params


def operation_limit(data_value: ua.DataValue) -> int:
    """An OperationLimits value: the number, or 0 (no limit) when the server has none."""
    value = data_value.Value.Value if data_value.Value is not None else None
    good = (data_value.StatusCode or ua.StatusCode()).is_good()
    return value if good and isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
