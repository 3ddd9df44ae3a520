"""The one interleaved timing loop of every bench/ script.

Each round runs every contestant once, the starting contestant rotating from
round to round, so slow drift (clock frequency, other processes) hits all
alike.  The first ``warmup`` rounds are discarded.  The garbage collector is
off while timing; an optional untimed ``gap_s`` sleep and an optional untimed
``before()`` call precede each timed call.
"""

from __future__ import annotations

import gc
import statistics
import time


def time_interleaved(
    contestants, names, repeats, warmup, gap_s=0.0, budget_s=None, min_repeats=5, before=None
):
    """{name: [seconds per timed call]} for ``contestants`` ({name: zero-argument
    callable}), in the order ``names``.

    With ``budget_s``, rounds stop early once that many seconds have passed
    since the first timed round and at least ``min_repeats`` are done (the
    stop depends on the clock only, never on the samples).  ``before()``, if
    given, runs untimed before each call (after the gap).
    """
    samples = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t_timed = None
        for r in range(warmup + repeats):
            if r == warmup:
                t_timed = time.perf_counter()
            elif (
                budget_s is not None
                and t_timed is not None
                and r - warmup >= min_repeats
                and time.perf_counter() - t_timed > budget_s
            ):
                break
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if gap_s:
                    time.sleep(gap_s)
                if before is not None:
                    before()
                fn = contestants[name]
                t0 = time.perf_counter()
                out = fn()
                t1 = time.perf_counter()
                del out
                if r >= warmup:
                    samples[name].append(t1 - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def medians_ms(samples):
    """{name: median in milliseconds} of ``time_interleaved``'s samples."""
    return {n: statistics.median(s) * 1e3 for n, s in samples.items()}


def interleaved_medians_ms(runs, repeats, warmup=True, before=None):
    """{name: median ms} for ``runs`` ({name: zero-argument callable}), through
    ``time_interleaved`` (no gap): ``warmup`` discards one round first;
    ``before()``, if given, runs untimed before each timed call."""
    return medians_ms(
        time_interleaved(runs, list(runs), repeats, 1 if warmup else 0, before=before)
    )
