"""Machine facts for the header and the JSON, and the peaks %peak is
measured against.  torch, onnxruntime and onnx are imported only by the
functions that report on them."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import statistics
import time

import numpy as np

import pydsconv

PEAK_NOTE = "the FMA peak measured on the same number of threads (header)"


def cpuinfo():
    model, mhz, flags = None, [], set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and model is None:
                    model = val
                elif key == "cpu MHz":
                    mhz.append(float(val))
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", mhz, flags


def theoretical_peak(mhz, flags):
    """FP32 FMA peak per core in GFLOP/s, assuming 2 FMA pipes per core."""
    if "avx512f" in flags:
        fpc, how = 64, "AVX-512F: 2 FMA pipes x 16 lanes x 2 flops"
    elif "avx2" in flags and "fma" in flags:
        fpc, how = 32, "AVX2+FMA: 2 FMA pipes x 8 lanes x 2 flops"
    elif "avx" in flags:
        fpc, how = 16, "AVX: 8 lanes x (1 add + 1 mul)"
    else:
        fpc, how = 8, "SSE: 4 lanes x (1 add + 1 mul)"
    ghz = (max(mhz) / 1000.0) if mhz else None
    return (ghz * fpc if ghz else None), ghz, fpc, how


def measured_gemm_peak(n=2048, reps=5):
    """Median GFLOP/s of an n^3 float32 torch matmul at 1 thread."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            ts.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2.0 * n**3 / statistics.median(ts) / 1e9


class Peaks:
    """The yardsticks of "% peak": the measured FMA peak per thread count
    (the one printed), the theoretical per-core peak and the torch matmul."""

    def __init__(self, threads, mhz, flags):
        self.core, self.ghz, self.fpc, self.how = theoretical_peak(mhz, flags)
        self.gemm = measured_gemm_peak()
        self.fma = {t: pydsconv._core.fma_peak_gflops(t) for t in sorted(set(threads))}

    def pct(self, gflops, threads):
        """The row fields: % of each yardstick at this thread count."""
        return dict(
            pct_peak=100.0 * gflops / self.fma[threads],
            pct_theoretical_peak=(
                100.0 * gflops / (self.core * threads) if self.core else float("nan")
            ),
            pct_gemm_peak_1thread_x_threads=100.0 * gflops / (self.gemm * threads),
        )


def _version(module):
    return importlib.import_module(module).__version__


def machine_info():
    model, mhz, flags = cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return (
        dict(
            date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            host=platform.node(),
            cpu_model=model,
            cpu_mhz=(max(mhz) if mhz else None),
            cpus=os.cpu_count(),
            cpus_usable=usable,
            cpu_flags_simd=sorted(
                f
                for f in flags
                if f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")
            ),
            python=platform.python_version(),
            numpy=np.__version__,
            pydsconv=getattr(pydsconv, "__version__", "?"),
            pydsconv_path=os.path.dirname(pydsconv.__file__),
            pydsconv_isa=pydsconv.cpu_features()["isa"],
            pydsconv_features=pydsconv.cpu_features(),
            torch=_version("torch"),
            onnxruntime=_version("onnxruntime"),
            onnx=_version("onnx"),
            loadavg_start=(os.getloadavg() if hasattr(os, "getloadavg") else None),
        ),
        mhz,
        flags,
    )
