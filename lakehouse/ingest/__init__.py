"""Pure steps of batch ingestion: fetch, parse, validate. The Spark writes live in spark_jobs/."""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused_gc():
    """Python's cycle collector paused for a block that builds millions of acyclic objects
    (a parsed batch, its columns): each full collection would walk every one of them again,
    about a quarter of the time of a 1M-row batch's validation. Nothing here makes cycles;
    the collector resumes (and catches up) when the block ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
