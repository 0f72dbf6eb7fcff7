"""Map a function over a stream in worker processes, results in input order, memory bounded.

`Pool.imap` reads its input as fast as it can (no backpressure), so on a large file it would hold
every batch in memory; here at most `window` items are in flight at any time.
"""

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


def start_method() -> str:
    """`fork` when this process runs no other thread: workers start in milliseconds and inherit what
    the parent already loaded (jieba's dictionary: ~1 s and ~100 MB a process otherwise).
    `forkserver` when it does (inside a Prefect flow: its API client and log threads; torch's pools):
    forking a threaded process can leave a lock held forever in the child."""
    return "fork" if threading.active_count() == 1 else "forkserver"


def ordered_map(
    fn: Callable,
    items: Iterable,
    workers: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
    window: int | None = None,
) -> Iterator:
    """`fn(item)` for each item in `workers` processes, yielded in input order. `initializer`
    runs once per process (e.g. to load a dictionary); `window` (default 2 × workers) caps the
    items submitted but not yet yielded, so one slow item never lets the input run ahead."""
    window = window or 2 * workers
    context = multiprocessing.get_context(start_method())
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        pending = deque()
        try:
            for item in items:
                if len(pending) >= window:
                    yield pending.popleft().result()
                pending.append(pool.submit(fn, item))
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an early stop: do not finish work nobody will read
            for future in pending:
                future.cancel()
