"""Dynamic batching: concurrent requests' images go through the model together, each answer to its caller."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import numpy as np


class Batcher:
    """Gather pictures (each its test-time views [V, 3, H, W]) into batches of up to `max_batch` pictures,
    run `model_fn` on them in a thread, answer each future.

    A batch takes every picture waiting when it starts. A picture that finds nothing else waiting
    runs at once (an idle model gains nothing by waiting: `benchmarks/serve_load.py` measured one
    client at 35 images/s with a 10 ms wait against 62 without); otherwise the batch waits at most
    `max_wait_ms` after its first picture for more. Pictures that arrive while a batch runs wait
    for it and go together into the next. `model_fn` maps a float32 batch [N, 3, H, W] to
    probabilities [N, C]. One batch runs at a time.
    """

    def __init__(self, model_fn: Callable[[np.ndarray], np.ndarray], *, max_batch: int = 32, max_wait_ms: float = 10):
        self.model_fn = model_fn
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.sizes: Counter = Counter()  # pictures per batch run, for /metadata and the tests
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def predict(self, views: np.ndarray) -> np.ndarray:
        """Probabilities [C] of one picture (its views averaged), once its batch has run."""
        if self._queue is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((views, future))
        return await future

    async def _loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if len(batch) > 1:  # others are asking too: give more of them a moment to join
                await self._fill(batch)
            await self._run(batch)

    async def _fill(self, batch: list) -> None:
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout=left))
            except TimeoutError:
                break

    async def _run(self, batch: list) -> None:
        self.sizes[len(batch)] += 1
        counts = [len(views) for views, _ in batch]
        stacked = np.concatenate([views for views, _ in batch])
        try:
            probabilities = await asyncio.to_thread(self.model_fn, stacked)
        except Exception as exc:  # answer every waiting request rather than leave it hanging
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for (_, future), count in zip(batch, counts, strict=True):
            if not future.done():
                future.set_result(probabilities[start : start + count].mean(axis=0))
            start += count
