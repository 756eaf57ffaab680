"""node-opcua's OPC UA server (tests/interop/opcua_server.mjs) as a context manager.

It serves a known address space (see the script's header and ``SERVED`` below) on an ephemeral
loopback port with the endpoints None/None and Basic256Sha256/SignAndEncrypt; anonymous login on
None only. Its PKI (own certificate, accepted client certificates) lives in the given folder.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from tests.interop.announced import AnnouncedServer

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "opcua_server.mjs"
NAMESPACE = "urn:edge-agent:interop:node-opcua"
USERNAME = "operator"
PASSWORD = "interop-Pa55word"  # a test server's login on loopback, not a secret

SERVED: dict[str, tuple[str, Any, type]] = {
    # tag name: (node id, value, Python type the agent must deliver)
    "temperature": (f"nsu={NAMESPACE};s=Temperature", 21.5, float),
    "ratio": (f"nsu={NAMESPACE};s=Ratio", 0.15625, float),  # a Float, exact in 32 bits
    "offset": (f"nsu={NAMESPACE};s=Offset", -123456, int),  # Int32
    "count": (f"nsu={NAMESPACE};s=Count", 65000, int),  # UInt16
    "running": (f"nsu={NAMESPACE};s=Running", True, bool),
    "label": (f"nsu={NAMESPACE};s=Label", "Presse 7 \u2013 Halle Süd", str),
    "spectrum_first": (f"nsu={NAMESPACE};s=Spectrum", 1.5, float),  # index 0 of a Double array
    "spectrum_last": (f"nsu={NAMESPACE};s=Spectrum", 1e6, float),  # index 2
    "numbered": (f"nsu={NAMESPACE};i=4711", 4711, int),
}
"""What the server holds; ``Clock`` (not listed) is the Unix time in seconds of its SourceTimestamp."""

INDEXES = {"spectrum_first": 0, "spectrum_last": 2}
UNITS = {"temperature": "°C"}
"""The server's EngineeringUnits (DisplayName); the other nodes have none."""

CLOCK_NODE = f"nsu={NAMESPACE};s=Clock"


class NodeOpcUaServer(AnnouncedServer):
    """``with NodeOpcUaServer(node, folder) as server:`` ... ``server.endpoint`` ... (writes counted)."""

    def __init__(self, node: str, folder: Path) -> None:
        super().__init__(
            [node, str(SCRIPT), str(folder / "pki"), USERNAME],
            folder / "node-opcua-server.log",
            env={"INTEROP_OPCUA_PASSWORD": PASSWORD},
            cwd=HERE,
        )
        self.final: dict[str, Any] | None = None

    @property
    def endpoint(self) -> str:
        return str(self.announcement["endpoint"])

    @property
    def pki(self) -> Path:
        return Path(self.command[2])

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        final = super().stop(timeout)
        self.final = final if final is not None else self.final
        return final

    @property
    def certificate_der(self) -> bytes:
        """The server's application certificate (node-opcua makes it in its PKI folder on first start)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        pem = (self.pki / "server" / "own" / "certs" / "certificate.pem").read_bytes()
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)

    @contextmanager
    def refusing_unknown_clients(self) -> Iterator[None]:
        """Within the block the server refuses client certificates it does not trust (SIGUSR2 toggles)."""
        assert self.signal_for_line(signal.SIGUSR2) == {"acceptUnknownClients": False}
        try:
            yield
        finally:
            assert self.signal_for_line(signal.SIGUSR2) == {"acceptUnknownClients": True}

    @property
    def write_requests(self) -> int:
        """Write/Call/node-management requests received; known after ``stop``."""
        if self.final is None:
            raise RuntimeError("the server has not stopped yet (it reports its counters on the way out)")
        return int(self.final["writes"])

    def __enter__(self) -> Self:
        return self.start()
