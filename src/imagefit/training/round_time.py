"""How the students' rounds share a time limit (`train --unlabelled DIR --time-limit T`): pure arithmetic and a clock.

A student fine-tunes for about as many steps as its teacher did (students.student_overrides), so a round costs about
what the run did: the time left goes to as many rounds as fit whole at that cost (round_share). Split over every
round whatever they cost, the first student of a 12-minute run had 2 minutes for four times its teacher's images
(cifar, 1,000 labels + 4,000 unlabelled) and lost 4.9 test points; and a round given the seconds left trained at
96 px under a one-second limit and lost 4 points more: no round starts with under MIN_ROUND_SHARE of a round's cost.
"""

from __future__ import annotations

import contextlib
import time

from rich.console import Console

MIN_ROUND_SHARE = 0.5  # a round under a time limit needs at least this share of what the last round cost


def round_share(left: float, cost: float, rounds_left: int) -> tuple[float, int]:
    """(seconds for the next round, rounds planned) when LEFT seconds remain and a round costs about COST; no
    round (0, 0) when LEFT is under MIN_ROUND_SHARE of COST (or nothing is left)."""
    if left <= 0 or (cost > 0 and left < MIN_ROUND_SHARE * cost):
        return 0.0, 0
    fit = int(left // cost) if cost > 0 else rounds_left
    planned = max(1, min(rounds_left, fit))
    return left / planned, planned


class RoundClock:
    """The students' time limit (seconds; 0: none), what a round costs (the run's wall time, then the last round's)."""

    def __init__(self, limit: float, *, cost: float, rounds: int) -> None:
        self.limit, self.cost, self.rounds = limit, cost, rounds
        self.started = time.perf_counter()

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.started)

    def room(self, console: Console) -> bool:
        """Whether another round fits (always, with no limit); says so in one line when not."""
        if not self.limit or round_share(self.left(), self.cost, 1)[1]:
            return True
        console.print(
            f"unlabelled: {max(self.left(), 0.0):.0f}s left, under half of what a round costs ({self.cost:.0f}s); "
            "no further round",
            highlight=False,
        )
        return False

    def share(self, round_number: int, console: Console) -> float | None:
        """Seconds for round ROUND_NUMBER (0: no limit), the plan said in one line; None when none fits (said)."""
        if not self.limit:
            return 0.0
        if not self.room(console):
            return None
        left = self.left()
        share, planned = round_share(left, self.cost, self.rounds + 1 - round_number)
        console.print(
            f"unlabelled: {left:.0f}s left, a round costs about {self.cost:.0f}s: {planned} round(s) planned, "
            f"{share:.0f}s for round {round_number}",
            highlight=False,
        )
        return share

    @contextlib.contextmanager
    def round(self):
        """Times the round inside: the next round is planned at what it cost."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.cost = time.perf_counter() - started
