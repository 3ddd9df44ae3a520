"""Interleaved timing shared by the small comparison scripts (generic_shapes.py,
text_1d.py): every repeat runs each contestant once, in turn, so drift in the
machine's speed hits all of them alike.  Returns medians in milliseconds."""
from __future__ import annotations

import statistics
import time


def interleaved_medians_ms(runs, repeats, warmup=True, before=None):
    """{name: median ms} for ``runs`` ({name: zero-argument callable});
    ``before()``, if given, runs untimed before each timed call."""
    if warmup:
        for f in runs.values():
            f()
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, f in runs.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            f()
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) * 1e3 for key, v in times.items()}
