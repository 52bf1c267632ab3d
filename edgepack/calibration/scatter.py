"""Independent calibration work (candidate scoring) mapped over items by a backend with one small interface:
``backend.map(fn, items) -> [fn(state, item) for item in items]``, in order.

``state`` is given once when the backend starts (a scorer holding the float activations); ``fn`` must be a
module-level function and items and results plain picklable values, so a distributed backend (later) can
ship ``fn`` by name and ``state`` once per worker. Every backend runs ``fn`` single-threaded, so the results
are bit-identical whatever the backend and the number of workers.

- ``InProcess``: this process (``workers`` 1, or too little work to pay for a pool);
- ``LocalPool``: a fork-started process pool; ``state`` is inherited by the children, never pickled.
"""
from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager


def machine_workers() -> int:
    """Cores this process may run on (the default number of workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def single_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class InProcess:
    def __init__(self, state):
        self.state = state

    def map(self, fn, items) -> list:
        with single_thread():
            return [fn(self.state, item) for item in items]

    def close(self) -> None:
        pass


_STATE = None  # a pool worker's state (inherited through fork)


def _start_worker(state) -> None:
    import torch

    global _STATE
    _STATE = state
    torch.set_num_threads(1)


def _call(task):
    fn, item = task
    return fn(_STATE, item)


class LocalPool:
    def __init__(self, state, workers: int):
        self.workers = workers
        self.pool = multiprocessing.get_context("fork").Pool(workers, _start_worker, (state,))

    def map(self, fn, items) -> list:
        items = list(items)
        return self.pool.map(_call, [(fn, item) for item in items], chunksize=1)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def backend(state, workers: int | None, items: int):
    """The backend for ``items`` independent tasks: a local pool of ``workers`` processes (None: one per
    core), in-process when one worker would do or fork is not available."""
    workers = min(machine_workers() if workers is None else int(workers), items)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return InProcess(state)
    return LocalPool(state, workers)
