"""Seeded random numbers, drawn from numpy in blocks and handed out one float at a time.

A machine model calls ``normal()`` a handful of times per step. Asking numpy for one scalar
at a time costs about a microsecond each, which would make ``edge-sim record`` of a week at
1 Hz too slow; drawing blocks of 4096 keeps the per-draw cost near a list index.

Block draws give the same sequence as single draws (numpy's generators are sequential), so
a model's output depends only on its seed and on how many steps it took, never on the block
size or on wall-clock timing.
"""

from __future__ import annotations

import zlib

import numpy as np

_BLOCK = 4096


def machine_seed(seed: int, machine_id: str) -> list[int]:
    """The seed material of one machine: the plant seed plus a stable hash of the machine id.

    Hashing the id (not the machine's position) means adding a machine to a plant does not
    change the numbers any other machine draws.
    """
    return [seed & 0xFFFFFFFF, zlib.crc32(machine_id.encode("utf-8"))]


class Noise:
    """Two independent buffered streams: standard normals and uniforms on [0, 1)."""

    def __init__(self, seed_material: list[int]) -> None:
        normal_seq, uniform_seq = np.random.SeedSequence(seed_material).spawn(2)
        self._normal_rng = np.random.Generator(np.random.PCG64(normal_seq))
        self._uniform_rng = np.random.Generator(np.random.PCG64(uniform_seq))
        self._normals: list[float] = []
        self._uniforms: list[float] = []
        self._ni = 0
        self._ui = 0

    def normal(self, sigma: float = 1.0) -> float:
        """One normal draw with mean 0 and standard deviation ``sigma``."""
        if self._ni >= len(self._normals):
            self._normals = self._normal_rng.standard_normal(_BLOCK).tolist()
            self._ni = 0
        value = self._normals[self._ni]
        self._ni += 1
        return value * sigma

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        """One uniform draw on [low, high)."""
        if self._ui >= len(self._uniforms):
            self._uniforms = self._uniform_rng.random(_BLOCK).tolist()
            self._ui = 0
        value = self._uniforms[self._ui]
        self._ui += 1
        return low + (high - low) * value
