"""Faults with ground truth: the library of fault kinds and the per-plant fault book."""

from simulators.faults.book import Fault, FaultBook, fault_problems
from simulators.faults.library import FAULT_KINDS, FaultKind, Progression

__all__ = ["FAULT_KINDS", "Fault", "FaultBook", "FaultKind", "Progression", "fault_problems"]
