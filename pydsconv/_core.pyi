# Type stubs for the C++ extension pydsconv._core (cpp/bindings.cpp).  Not
# public API: use the functions of the pydsconv package.  Checked against the
# built module in CI with mypy's stubtest.
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__version__: str

_Pair = Sequence[int]
_Pad4 = Sequence[int]

class PackedPointwise:
    @property
    def weight(self) -> np.ndarray: ...
    @property
    def isa(self) -> str: ...

class PlanCore:
    """A compiled network (cpp/plan.h); wrapped by pydsconv.Plan."""
    @property
    def input_shape(self) -> Tuple[int, ...]: ...
    @property
    def output_shape(self) -> Tuple[int, ...]: ...
    @property
    def layout(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def num_threads(self) -> int: ...
    @property
    def arena_bytes(self) -> int: ...
    def steps(self) -> List[Dict[str, Any]]: ...
    def run(self, x: Any, out: Optional[np.ndarray]) -> np.ndarray: ...
    def profile(self, x: Any, repeats: int) -> List[float]: ...

def compile_plan(
    specs: List[tuple],
    input_shape: Sequence[int],
    layout: str,
    f64: bool,
    threads: int,
    fuse: int = ...,
) -> PlanCore: ...
def read_plan_file(path: str) -> Tuple[str, str, Tuple[int, ...], List[tuple]]: ...
def depthwise_forward(
    x: Any,
    w: Any,
    b: Any,
    spatial: int,
    layout: str,
    stride: _Pair,
    dilation: _Pair,
    pad_mode: str,
    pad: _Pad4,
    act: Optional[str],
    out: Optional[np.ndarray],
    threads: int,
    /,
) -> np.ndarray: ...
def pointwise_forward(
    x: Any,
    w: Any,
    b: Any,
    spatial: int,
    layout: str,
    act: Optional[str],
    out: Optional[np.ndarray],
    threads: int,
    packed: Optional[PackedPointwise] = None,
) -> np.ndarray: ...
def separable_forward(
    x: Any,
    dw: Any,
    pw: Any,
    db: Any,
    pb: Any,
    spatial: int,
    layout: str,
    stride: _Pair,
    dilation: _Pair,
    pad_mode: str,
    pad: _Pad4,
    mid_act: Optional[str],
    act: Optional[str],
    out: Optional[np.ndarray],
    threads: int,
    packed: Optional[PackedPointwise] = None,
) -> np.ndarray: ...
def depthwise_backward(
    grad_out: Any,
    x: Any,
    w: Any,
    spatial: int,
    layout: str,
    stride: _Pair,
    dilation: _Pair,
    pad_mode: str,
    pad: _Pad4,
    input_grad: bool,
    weight_grad: bool,
    bias_grad: bool,
    threads: int,
    /,
) -> tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]: ...
def pointwise_backward(
    grad_out: Any,
    x: Any,
    w: Any,
    spatial: int,
    layout: str,
    input_grad: bool,
    weight_grad: bool,
    bias_grad: bool,
    threads: int,
    /,
) -> tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]: ...
def prepack_pointwise(weight: Any, threads: int, /) -> PackedPointwise: ...
def cpu_features() -> dict[str, Any]: ...
def set_isa(name: str, /) -> None: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
def max_threads() -> int: ...
def fma_peak_gflops(threads: int) -> float: ...
def fma_probe_flops(iters: int) -> float: ...
def _activate(a: np.ndarray, act: Optional[str]) -> np.ndarray: ...
