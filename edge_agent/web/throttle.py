"""Slows down password guessing at the status page, per remote address.

Without it a script tries thousands of passwords a second, and each try is work on the loop that
polls the machines. After ``free`` wrong logins an address must wait ``first`` seconds before
its next try, doubling with each further wrong one up to ``longest``; meanwhile every request it
makes with a credential is refused (429 with ``Retry-After``), the right password included, so
the answer tells a guesser nothing. A right login clears the address's record; a quiet period of
twice the longest wait forgets it.

IPv6 addresses count per /64 (one host usually owns a whole /64, so per-address counting would
give it 2**64 fresh starts). At most ``max_addresses`` are tracked: memory stays bounded whatever
arrives, and when full the record idle longest goes first.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
MAX_ADDRESSES = 10_000


def client_key(remote: str | None) -> str:
    """Who is guessing: the IPv4 address, the IPv6 /64, or the raw text if it is no address."""
    text = remote or "?"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


class LoginThrottle:
    """Counts wrong logins per client and says how long a client must still wait."""

    def __init__(
        self,
        free: int = 5,
        first: float = 1.0,
        longest: float = 300.0,
        clock: Clock = time.time,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.free = free
        self.first = first
        self.longest = longest
        self.clock = clock
        self.max_addresses = max_addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.longest, self.first * 2.0 ** min(failures - self.free, 60))

    def retry_after(self, key: str) -> float | None:
        """Seconds ``key`` must still wait before a login is checked; None when it may try now."""
        record = self._records.get(key)
        if record is None:
            return None
        elapsed = self.clock() - record.last
        if elapsed >= 2 * self.longest or elapsed < -self.longest:  # long quiet, or the clock was set back
            del self._records[key]
            return None
        wait = min(self.longest, self._delay(record.failures) - elapsed)
        return wait if wait > 0 else None

    def failed(self, key: str) -> float:
        """Record a wrong login; returns the wait it earns (0 while still within the free tries)."""
        record = self._records.pop(key, None) or _Record(0, 0.0)
        record.failures += 1
        record.last = self.clock()
        self._records[key] = record  # newest last: the oldest goes first when full
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        return self._delay(record.failures)

    def succeeded(self, key: str) -> None:
        """A right login: start afresh."""
        self._records.pop(key, None)

    @property
    def waiting(self) -> int:
        """How many clients are tracked (for tests and metrics)."""
        return len(self._records)
