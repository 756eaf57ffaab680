"""Where the ingest bridge writes points: InfluxDB 1.x over HTTP, InfluxDB 2.x/3.x via influxdb-client.

The bridge only needs three calls (``write``, ``ping``, ``close``), so both versions hide behind the
small ``InfluxWriter`` protocol and the bridge never learns HTTP details. What the bridge *does*
need to know is whether a failed write is worth retrying:

- ``WriteFailed`` (retryable): InfluxDB is unreachable, slow, overloaded (5xx), refuses the
  credentials or lacks the database. The same lines may succeed later, so the bridge keeps the
  MQTT messages unacked and retries with backoff: nothing is lost.
- ``RejectedPoints`` (not retryable): InfluxDB answered that the data itself is bad (400 partial
  write, field type conflict, unparsable line; 413 too large; 422 outside retention). Sending the
  same bytes again can never succeed, so the bridge isolates the offending message, counts it
  and acks it, so one bad publisher cannot block the stream.

Both are ``SinkError``s, raised ``from`` the library exception. The 1.x client also answers InfluxQL
queries (``InfluxV1Writer.query``, ``QueryFailed``): the model command reads training history
through it, so every HTTP conversation with InfluxDB lives in this module. Messages never contain a token or
password: credentials travel in headers, never in URLs, and are read from ``SecretStr`` only at
the moment a request is built.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from edge_agent.core.errors import SinkError
from edge_agent.delivery.config import InfluxConfig

__all__ = [
    "InfluxV1Writer",
    "InfluxV2Writer",
    "InfluxWriter",
    "QueryFailed",
    "RejectedPoints",
    "WriteFailed",
    "make_writer",
]

# Statuses with which InfluxDB says "this data is wrong" rather than "try again".
_DATA_ERROR_STATUSES = frozenset({400, 413, 422})
_MAX_DETAIL = 500


class WriteFailed(SinkError):
    """A write did not happen; ``retryable`` says whether sending the same lines again may succeed.

    ``status`` is the HTTP status when InfluxDB answered, None when it could not be reached.
    """

    retryable: bool = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RejectedPoints(WriteFailed):
    """InfluxDB refused (some of) the points as bad data. Retrying the same lines cannot help.

    With a 400 partial write InfluxDB has stored the valid points of the request and dropped the
    others; ``detail`` is InfluxDB's own explanation (e.g. ``field type conflict``).
    """

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message, status=status)


class QueryFailed(SinkError):
    """An InfluxQL query got no answer: ``status`` is the HTTP status (None when unreachable), ``detail``
    InfluxDB's text or the connection problem."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__(message)


class InfluxWriter(Protocol):
    """A destination for line-protocol points (nanosecond timestamps)."""

    @property
    def target(self) -> str:
        """Where it writes, for log lines (never contains credentials)."""
        ...

    async def write(self, lines: Sequence[str] | bytes) -> None:
        """Write all lines in one request; raise ``WriteFailed`` / ``RejectedPoints``.

        ``bytes`` is a request body that is already line protocol (lines joined by newlines, UTF-8):
        sent as it is, which spares joining and encoding the lines on the event loop.
        """
        ...

    async def ping(self) -> None:
        """Raise ``WriteFailed`` when InfluxDB does not answer; a start-up health check."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...


def _detail(body: str) -> str:
    """InfluxDB's error text out of a JSON ``{"error": ...}`` / ``{"message": ...}`` body, shortened."""
    text = body.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        text = str(parsed.get("error") or parsed.get("message") or text)
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "…"


def _http_failure(status: int, body: str, target: str, fix_auth: str, fix_missing: str) -> WriteFailed:
    """Turn an unsuccessful HTTP answer into the right error, with a fix where there is an obvious one."""
    detail = _detail(body)
    if status in _DATA_ERROR_STATUSES:
        return RejectedPoints(
            f"InfluxDB at {target} rejected points (HTTP {status}): {detail}", status=status, detail=detail
        )
    if status in (401, 403):
        return WriteFailed(
            f"InfluxDB at {target} refused the credentials (HTTP {status}). Fix: {fix_auth}", status=status
        )
    if status == 404:
        return WriteFailed(f"InfluxDB at {target}: not found (HTTP 404): {detail}. Fix: {fix_missing}", status=status)
    return WriteFailed(f"InfluxDB at {target} failed (HTTP {status}): {detail}", status=status)


class InfluxV1Writer:
    """InfluxDB 1.x ``POST /write?db=&rp=&precision=ns`` with aiohttp; basic auth when configured, else
    the token (the 1.x-compatible API of InfluxDB 2.x). Also runs InfluxQL queries (``query``).

    The HTTP session is created on first use, inside the running event loop (aiohttp requires it).
    """

    def __init__(self, config: InfluxConfig) -> None:
        if not config.database:
            raise ValueError("InfluxV1Writer needs influxdb.database")
        self._base = config.url.rstrip("/")
        self._database = config.database
        self._params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy
        self._config = config
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def target(self) -> str:
        return f"{self._base} (database {self._database!r})"

    def _headers(self) -> dict[str, str]:
        """Basic auth built by hand: aiohttp.BasicAuth is deprecated in newer aiohttp, its successor is new."""
        if not self._config.username:
            if self._config.token is not None:
                return {"Authorization": f"Token {self._config.token.get_secret_value()}"}
            return {}
        password = self._config.password.get_secret_value() if self._config.password else ""
        token = base64.b64encode(f"{self._config.username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def write(self, lines: Sequence[str] | bytes) -> None:
        if not lines:
            return
        body = _body(lines)
        try:
            async with self._http().post(
                f"{self._base}/write", params=self._params, data=body, headers=self._headers(), timeout=self._timeout
            ) as response:
                if 200 <= response.status < 300:
                    return
                status, text = response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WriteFailed(f"InfluxDB at {self.target} is unreachable: {_describe(exc)}") from exc
        raise _http_failure(
            status,
            text,
            self.target,
            fix_auth="check influxdb.username and influxdb.password",
            fix_missing=f'create the database (InfluxQL: CREATE DATABASE "{self._database}") '
            "or correct influxdb.database / influxdb.retention_policy",
        )

    async def ping(self) -> None:
        try:
            async with self._http().get(f"{self._base}/ping", timeout=self._timeout) as response:
                if 200 <= response.status < 300:
                    return
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WriteFailed(f"InfluxDB at {self.target} is unreachable: {_describe(exc)}") from exc
        raise WriteFailed(f"InfluxDB at {self.target} answered /ping with HTTP {status}", status=status)

    async def query(self, influxql: str, *, chunk_rows: int = 10000) -> AsyncIterator[bytes]:
        """Run ``influxql`` (``GET /query``, chunked): yield each JSON document of the answer as it arrives.

        Chunked, so a day of 1 Hz data is never held twice as JSON. ``influxdb.timeout`` bounds the
        connect and each wait for data, not the whole answer, which may take long. Raises ``QueryFailed``.
        """
        params = {"db": self._database, "q": influxql, "epoch": "ms", "chunked": "true", "chunk_size": str(chunk_rows)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._config.timeout, sock_read=self._config.timeout)
        try:
            async with self._http().get(
                f"{self._base}/query", params=params, headers=self._headers(), timeout=timeout
            ) as response:
                if response.status != 200:
                    detail = (await response.text(errors="replace"))[:_MAX_DETAIL]
                    raise QueryFailed(
                        f"InfluxDB at {self.target} answered the query with HTTP {response.status}: {detail}",
                        status=response.status,
                        detail=detail,
                    )
                pending = bytearray()
                async for data in response.content.iter_any():
                    pending += data
                    end = pending.rfind(b"\n")
                    if end < 0:
                        continue
                    for line in bytes(pending[:end]).split(b"\n"):
                        if line.strip():
                            yield line
                    del pending[: end + 1]
                if pending.strip():
                    yield bytes(pending)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = _describe(exc)
            raise QueryFailed(f"InfluxDB at {self.target} is unreachable: {reason}", detail=reason) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class InfluxV2Writer:
    """InfluxDB 2.x/3.x (and anything speaking ``/api/v2/write``) through influxdb-client's async client.

    The client is created on first use because ``InfluxDBClientAsync`` must be built inside a
    running event loop. Authentication: ``token`` if set, else ``username``/``password``.
    """

    def __init__(self, config: InfluxConfig) -> None:
        if not (config.org and config.bucket):
            raise ValueError("InfluxV2Writer needs influxdb.org and influxdb.bucket")
        self._config = config
        self._org = config.org
        self._bucket = config.bucket
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None

    @property
    def target(self) -> str:
        return f"{self._config.url.rstrip('/')} (org {self._org!r}, bucket {self._bucket!r})"

    def _api(self) -> InfluxDBClientAsync:
        if self._client is None:
            config = self._config
            credentials: dict[str, str] = {}
            if config.token is not None:
                credentials["token"] = config.token.get_secret_value()
            elif config.username:
                credentials["username"] = config.username
                credentials["password"] = config.password.get_secret_value() if config.password else ""
            self._client = InfluxDBClientAsync(
                url=config.url, org=self._org, timeout=int(config.timeout * 1000), **credentials
            )
        return self._client

    async def write(self, lines: Sequence[str] | bytes) -> None:
        if not lines:
            return
        # influxdb-client annotates write_precision as WritePrecision, but its members are plain strings.
        precision: Any = WritePrecision.NS
        try:
            if self._write_api is None:
                self._write_api = self._api().write_api()
            write_api = self._write_api
            # One bytes record: influxdb-client sends it as the body unchanged. A list of str would be
            # walked and encoded line by line in Python, costing about as much as the HTTP request.
            await write_api.write(bucket=self._bucket, org=self._org, record=_body(lines), write_precision=precision)
        except ApiException as exc:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
            raise _http_failure(
                int(exc.status or 0),
                body,
                self.target,
                fix_auth="check influxdb.token (it needs write permission on the bucket)",
                fix_missing="create the bucket or correct influxdb.org / influxdb.bucket",
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteFailed(f"InfluxDB at {self.target} is unreachable: {_describe(exc)}") from exc

    async def ping(self) -> None:
        try:
            await self._api().ping()
        except ApiException as exc:
            raise WriteFailed(
                f"InfluxDB at {self.target} answered /ping with HTTP {exc.status}", status=exc.status
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise WriteFailed(f"InfluxDB at {self.target} is unreachable: {_describe(exc)}") from exc

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self._write_api = None
            await client.close()  # type: ignore[no-untyped-call]


def _body(lines: Sequence[str] | bytes) -> bytes:
    return lines if isinstance(lines, bytes) else "\n".join(lines).encode()


def _describe(exc: BaseException) -> str:
    """A one-line reason for a connection failure (TimeoutError's str() is empty)."""
    if isinstance(exc, TimeoutError):
        return "no answer within influxdb.timeout"
    return str(exc) or type(exc).__name__


def make_writer(config: InfluxConfig) -> InfluxWriter:
    """The writer for ``influxdb.version``."""
    if config.version == 1:
        return InfluxV1Writer(config)
    return InfluxV2Writer(config)
