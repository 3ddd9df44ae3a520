#!/usr/bin/env bash
# ASan + UBSan stage of CI (also runnable by hand):
#
#   bash .ci/sanitize.sh [BUILD_DIR]        (default build/asan)
#
# 1. configures and builds, with CMake directly (not pip), the extension _core
#    and the C++ benchmark binary with PYDSCONV_SANITIZE=ON (ASan + UBSan,
#    UBSan not recoverable: any report aborts), PYDSCONV_WERROR=ON and
#    PYDSCONV_EMULATED_AVX512=ON (the 512-bit kernels also built for AVX2,
#    ISA "avx512emu", so they run on every host);
# 2. runs `pydsconv-bench MODEL --check` (every ISA, avx512emu included, and
#    both layouts against scalar)
#    on every bench/models/*.txt, LeakSanitizer on;
# 3. runs the fast tests (-m "not slow": no subprocess-heavy, leak, memory
#    or training tests, which the plain run covers) against the sanitized
#    module, on scalar, the host's best ISA and, where built, the emulated
#    AVX-512 unit (the 512-bit kernels compiled for AVX2).
#
# The module goes to BUILD_DIR/pkg/pydsconv/ beside a copy of the package's
# Python files, never to pydsconv/ (a developer's in-place module stays as it
# is), and pytest runs from an empty directory with PYTHONPATH=BUILD_DIR/pkg,
# so neither the source tree nor an installed pydsconv can be imported instead
# (checked before the tests run).
#
# Needs, on PATH: python with numpy, pytest, hypothesis, threadpoolctl and
# pybind11 (torch optional: its tests skip without it), cmake, ninja, and GCC
# (CXX, default g++: its libasan/libubsan are preloaded into Python).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build/asan}
case $build in /*) ;; *) build=$root/$build ;; esac
pkg=$build/pkg
cxx=${CXX:-g++}
python=$(command -v python3 || command -v python)

runtime() {  # absolute path of a GCC sanitizer runtime, or fail
  local lib
  lib=$("$cxx" -print-file-name="$1")
  if [[ $lib != /* || ! -e $lib ]]; then
    echo "sanitize.sh: $cxx has no $1 (a GCC with ASan/UBSan is needed)" >&2
    exit 1
  fi
  echo "$lib"
}
libasan=$(runtime libasan.so)
libubsan=$(runtime libubsan.so)

# UBSan: print the stack and stop at the first report (recovery is compiled
# out too: -fno-sanitize-recover=all in CMakeLists.txt).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "-- build (ASan + UBSan, -Werror, RelWithDebInfo) in $build"
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPYDSCONV_SANITIZE=ON -DPYDSCONV_WERROR=ON -DPYDSCONV_BENCH=ON -DPYDSCONV_PYTHON=ON \
  -DPYDSCONV_EMULATED_AVX512=ON \
  -DPython_EXECUTABLE="$python" -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
  -DPYDSCONV_MODULE_DIR="$pkg/pydsconv" >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build"
# The package's Python files next to the sanitized module; an in-place _core
# from a developer build must not come along (it would replace ours).
tar -C pydsconv --exclude='_core*.so' --exclude=__pycache__ -cf - . | tar -C "$pkg/pydsconv" -xf -

echo "-- bench --check on every model file (ASan + LSan + UBSan)"
for model in bench/models/*.txt; do
  log=$build/check-$(basename "$model" .txt).log
  if ASAN_OPTIONS=detect_leaks=1 "$build/pydsconv-bench" "$model" --check >"$log" 2>&1; then
    echo "$model: $(tail -n 1 "$log")"
  else
    cat "$log"
    echo "sanitize.sh: bench --check failed on $model" >&2
    exit 1
  fi
done

echo "-- bench --plan --check on saved plans (ASan + LSan + UBSan)"
# MobileNetV1 (separable steps, banded chains) and MobileNetV3-Large (residual
# adds, squeeze-and-excitation, hardswish), saved by the sanitized module,
# read and checked by the sanitized bench against the single ops.
(cd / && PYTHONPATH="$pkg" LD_PRELOAD="$libasan:$libubsan" ASAN_OPTIONS=detect_leaks=0 "$python" -c "
from pydsconv import nn
nn.compile(nn.MobileNetV1(0.25, num_classes=10, input_size=32, rng=0).eval(), (2, 3, 32, 32)).save('$build/v1.plan')
nn.compile(nn.models.MobileNetV3Large(num_classes=10, rng=0).eval(), (2, 3, 48, 48), fuse='always').save('$build/v3.plan')
")
for plan in v1 v3; do
  log=$build/check-plan-$plan.log
  if ASAN_OPTIONS=detect_leaks=1 "$build/pydsconv-bench" --plan "$build/$plan.plan" --check --threads 2 >"$log" 2>&1; then
    echo "$plan.plan: $(tail -n 1 "$log")"
  else
    cat "$log"
    echo "sanitize.sh: bench --plan --check failed on $plan.plan" >&2
    exit 1
  fi
done

echo "-- pytest under ASan + UBSan"
# detect_leaks=0: CPython keeps interned objects and module state alive until
# exit by design, so LeakSanitizer would report Python itself, not us.
# allocator_may_return_null=1: a malloc too big to serve returns NULL, as it
# does without ASan, so NumPy raises MemoryError (tests of the size limits
# expect that) instead of ASan aborting on allocation-size-too-big.
# PYTHONMALLOC=malloc: Python objects come from malloc too, so ASan sees
# misuse of them (refcounts in the binding, use after free) as well as of
# array buffers.
# --capture=sys: a sanitizer report is written by the runtime to fd 2 just
# before the process exits; pytest's default fd capture would swallow it.
# torch (the second oracle) runs under ASan without reports, so its tests stay.
neutral=$(mktemp -d)
trap 'rm -rf "$neutral"' EXIT
# PYDSCONV_TEST_ISAS: the tests' `isa` fixture runs scalar, the host's best
# kernel set and, on hosts without AVX-512, the emulated AVX-512 unit (the
# 512-bit kernels compiled for AVX2: on an AVX-512 host it is the same
# source as the real unit, which "best" covers).  The middle ISA of an
# AVX-512 host is left to the plain test run and bench --check above.
best_isa=$(cd / && PYTHONPATH="$pkg" LD_PRELOAD="$libasan:$libubsan" ASAN_OPTIONS=detect_leaks=0 \
           "$python" -c "import pydsconv; print(pydsconv.cpu_features()['best_isa'])")
default_isas=scalar,best
[[ $best_isa == avx2 ]] && default_isas=scalar,best,avx512emu
san_env=(env PYTHONPATH="$pkg" PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
         PYDSCONV_TEST_ISAS="${PYDSCONV_TEST_ISAS:-$default_isas}" LD_PRELOAD="$libasan:$libubsan")
(cd "$neutral" && "${san_env[@]}" "$python" -c "
import sys, pydsconv
assert pydsconv.__file__.startswith(sys.argv[1]), pydsconv.__file__
print('testing', pydsconv._core.__file__, dict(pydsconv.cpu_features()))
" "$pkg/")
# -v into a log: after a sanitizer abort its last test line names the test.
log=$build/pytest.log
if (cd "$neutral" && "${san_env[@]}" "$python" -m pytest "$root/tests" -v -x --capture=sys \
      -p no:cacheprovider -m "not slow" -o addopts="--strict-markers") >"$log" 2>&1; then
  tail -n 1 "$log"
else
  status=$?
  grep -v ' PASSED ' "$log" | tail -n 300
  echo "sanitize.sh: pytest under ASan + UBSan failed (exit $status); full log: $log" >&2
  exit "$status"
fi
