"""The deadline a check's passes respect: when they must stop adding evaluations, and
what one evaluation costs (set up by the budget, read by every pass).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Deadline:
    """When the passes must stop adding evaluations, and what one evaluation costs."""

    end: float  # time.perf_counter() value; inf without a budget
    per_call: float  # seconds per evaluation (0 without a budget)
    per_point: float = 0.0  # seconds per point of a direction over the largest block
    per_round: float = 0.0  # evaluations one random direction over every block costs
    per_search: float = 0.0  # evaluations kept for localising what the directions flag

    def for_directions(self) -> Deadline:
        """The deadline counting each evaluation at the cost of a direction's point."""
        return replace(self, per_call=max(self.per_call, self.per_point))

    @classmethod
    def none(cls) -> Deadline:
        return cls(math.inf, 0.0)

    def left(self) -> float:
        """Seconds left before the deadline (inf without a budget)."""
        return self.end - time.perf_counter()

    def affords(self, evaluations: int) -> bool:
        """Whether ``evaluations`` more fit before the deadline."""
        return self.end == math.inf or evaluations * self.per_call <= self.left()

    def how_many(self, cost: int, wanted: int) -> int:
        """How many of ``wanted`` items costing ``cost`` evaluations each still fit."""
        if self.end == math.inf:
            return wanted
        return int(min(wanted, max(0.0, self.left()) // max(cost * self.per_call, 1e-12)))

    def earlier(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` earlier: time kept for what comes after."""
        return replace(self, end=self.end - seconds)

    def keeping(self, directions: int) -> Deadline:
        """The deadline that keeps the time of ``directions`` rounds of directions and of
        the localisation of what they flag.
        """
        if not directions:
            return self
        return self.earlier((directions * self.per_round + self.per_search) * self.per_call)
