"""How much of the finish a `--time-limit` run can afford: its pieces priced, the optional ones dropped in order.

After training, the finish chooses the prediction settings on val (a pass at each candidate size,
the mirrored view inside it), evaluates val and test and predicts the unlabelled images at the chosen
settings, builds the unknown index (an embedding pass over up to INDEX_SIZE training images, then
val), and writes the report. At the largest candidate (1.3x the training size, two views) a pass
costs 3.4x one at the training size, so a finish priced at the training size ran 2.4x its plan on a
held-back microscopy set (4.1 min against 1.7). Here every piece is priced at what it really runs;
the price of one image comes from the probe before training and from the finish's own first pass
after it, and what does not fit is dropped in DROP_ORDER, each drop said.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Shrunk before it is dropped: 1,000 training embeddings still flag unknown images (the k-NN score
# needs a few dozen a class).
SMALL_INDEX = 1000
# Before training, the finish is planned to take at most this share of the limit (the rest trains).
FINISH_SHARE = 0.15
REPORT_SECONDS = 15.0  # the report's figures, Grad-CAM and galleries


@dataclass(frozen=True)
class FinishWork:
    """What the finish does: evaluation sizes tried on val, views at most, training images in the unknown index."""

    sizes: tuple[int, ...]
    views: int
    index_size: int  # 0: no unknown index


@dataclass(frozen=True)
class FinishCounts:
    train: int
    val: int
    test: int = 0
    unlabelled: int = 0


# Each step makes the work cheaper; they are taken in this order until the finish fits.
DROP_ORDER = (
    ("larger evaluation sizes", lambda w: dataclasses.replace(w, sizes=w.sizes[:1])),
    (
        f"unknown index over {SMALL_INDEX:,} images",
        lambda w: dataclasses.replace(w, index_size=min(w.index_size, SMALL_INDEX)),
    ),
    ("the mirrored view", lambda w: dataclasses.replace(w, views=1)),
    ("the unknown index", lambda w: dataclasses.replace(w, index_size=0)),
)


def finish_seconds(
    work: FinishWork,
    *,
    per_image: float,
    counts: FinishCounts,
    report_seconds: float,
    choose: bool = True,
) -> float:
    """Seconds the finish takes: PER_IMAGE is one view of one image at the training size (sizes[0]), decode included.

    `choose` False: the prediction settings are chosen already (or not at all), only the rest is priced.
    """
    base = work.sizes[0]
    factors = [(size / base) ** 2 for size in work.sizes]
    chosen = max(factors) * work.views  # the dearest candidate may be chosen: the rest is priced at it
    images = counts.val * sum(factors) * work.views if choose else 0.0
    images += (counts.val + counts.test + counts.unlabelled) * chosen
    if work.index_size:
        images += (min(counts.train, work.index_size) + counts.val) * chosen
    return per_image * images + report_seconds


def plan_finish(
    full: FinishWork,
    *,
    left: float,
    per_image: float,
    counts: FinishCounts,
    report_seconds: float,
    choose: bool = True,
) -> tuple[FinishWork, list[str]]:
    """The most of FULL that fits in LEFT seconds, and what was dropped (in DROP_ORDER); the floor when nothing fits.

    The floor (val and test at the training size, one view, no index, the report) always runs: the run
    must end with its evaluation.
    """
    work, dropped = full, []
    price = dict(per_image=per_image, counts=counts, report_seconds=report_seconds, choose=choose)
    for name, cheaper in DROP_ORDER:
        if finish_seconds(work, **price) <= left:
            break
        smaller = cheaper(work)
        if smaller != work:
            work = smaller
            dropped.append(name)
    return work, dropped


def planned_seconds(
    full: FinishWork,
    *,
    limit: float,
    per_image: float,
    counts: FinishCounts,
    report_seconds: float,
    choose: bool = True,
) -> float:
    """Seconds the finish is planned to take before training: all of FULL, or what fits FINISH_SHARE of LIMIT."""
    price = dict(per_image=per_image, counts=counts, report_seconds=report_seconds, choose=choose)
    work, _ = plan_finish(full, left=FINISH_SHARE * limit, **price)
    return finish_seconds(work, **price)


@dataclass
class FinishBudget:
    """The finish of a `--time-limit` run: it settles its work once its first pass has priced an image."""

    deadline: float  # clock() by which the run must end
    counts: FinishCounts
    index_size: int  # the unknown index's size when it fits (0: none asked for)
    report_seconds: float = REPORT_SECONDS
    clock: Callable[[], float] = time.perf_counter
    work: FinishWork | None = None
    dropped: list[str] = field(default_factory=list)

    def settle(self, *, per_image: float, spent: float, sizes: tuple[int, ...], views: int) -> FinishWork:
        """The work that fits, given the first pass (val at sizes[0], VIEWS views) took SPENT seconds just now."""
        full = FinishWork(tuple(sizes), views, self.index_size)
        left = self.deadline - self.clock() + spent  # that first pass is priced again in the plan
        self.work, self.dropped = plan_finish(
            full, left=left, per_image=per_image, counts=self.counts, report_seconds=self.report_seconds
        )
        return self.work

    def said(self) -> str:
        """One line when something was dropped to end in time, else ''."""
        if not self.dropped:
            return ""
        return f"time limit: the finish leaves out {', '.join(self.dropped)} to end in time"
