"""Capped, jittered exponential backoff for every reconnect loop.

Jitter ("full jitter": a random delay between half and all of the current step) keeps a
hundred agents from hammering a broker in lock-step after it comes back.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``initial * 2**n`` seconds, capped at ``cap``, each jittered down by up to half."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until it reaches the cap."""
        step = min(self.cap, self.initial * (2.0 ** min(self._attempt, 30)))
        self._attempt += 1
        return step * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        """Call after a success so the next failure starts with a short delay again."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        """Failures since the last success."""
        return self._attempt
