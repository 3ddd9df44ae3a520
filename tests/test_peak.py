"""The FMA-peak probe (cpp/peak.cpp) that pydsconv-bench and bench/compare.py
report "% of peak" against.

Only behaviour is checked here: which kernel set's loop the probe runs (its
flop count per iteration is fixed by the vector width) and that it returns a
finite positive rate.  How fast each set runs is a benchmark question:
``pydsconv-bench --peak`` prints the probe on every ISA with the ratio to the
one below.  (Rates are not comparable in a unit test: under AddressSanitizer
every set runs at a few GFLOP/s, and on Zen 4 AVX-512 runs at AVX2's rate.)"""

import math

import pytest
from conftest import host_isas

import pydsconv
from pydsconv import _core

# float32 lanes of each kernel set's vector: the scalar set's loop uses
# 16-byte vectors (SSE2 on x86), then 32 and 64 bytes.
LANES = {"scalar": 4, "avx2": 8, "avx512": 16, "avx512emu": 16}
CHAINS = 12  # independent FMA chains in KernelTable::fma_peak_loop


@pytest.fixture
def restore_isa():
    before = pydsconv.cpu_features()["isa"]
    yield
    _core.set_isa(before)


@pytest.mark.parametrize("isa", host_isas())
def test_fma_probe_runs_the_kernel_set_asked_for(isa, restore_isa):
    _core.set_isa(isa)
    assert pydsconv.cpu_features()["isa"] == isa
    for iters in (0, 1, 7, 1000):
        assert _core.fma_probe_flops(iters) == 2 * CHAINS * LANES[isa] * iters, (isa, iters)


@pytest.mark.parametrize("isa", host_isas())
def test_fma_peak_is_a_finite_positive_rate(isa, restore_isa):
    _core.set_isa(isa)
    r = _core.fma_peak_gflops(1)
    assert math.isfinite(r) and r > 0, (isa, r)


@pytest.mark.parametrize("threads", [0, -3])
def test_fma_peak_runs_one_thread_below_one(threads):
    # threads < 1 runs one thread (like num_threads elsewhere), not zero.
    r = _core.fma_peak_gflops(threads)
    assert math.isfinite(r) and r > 0


def test_fma_probe_negative_iterations_do_nothing():
    assert _core.fma_probe_flops(-5) == 0
