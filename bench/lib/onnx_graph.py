"""The ONNX graphs of the blocks (built with the ``onnx`` helper API, opset
17) and the ONNX Runtime sessions that run them.  Needs onnx and onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from .models import STAGES, op_blocks

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR version that goes with opset 17


def relu6_constants():
    """The initializers "zero" and "six" that every Clip(0, 6) reads."""
    return [
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6.0, np.float32), "six"),
    ]


def _onnx_block_nodes(b, w, x_name, prefix, stages, inits):
    """Append Conv(+Clip) nodes of one block; returns (nodes, output name)."""
    nodes = []
    cur = x_name
    if "dw" in stages:
        inits += [
            numpy_helper.from_array(w["dw"], f"{prefix}_dw_w"),
            numpy_helper.from_array(w["db"], f"{prefix}_dw_b"),
        ]
        nodes.append(
            helper.make_node(
                "Conv",
                [cur, f"{prefix}_dw_w", f"{prefix}_dw_b"],
                [f"{prefix}_dw"],
                name=f"{prefix}_dw_conv",
                group=b.C,
                kernel_shape=[b.kh, b.kw],
                strides=[b.sh, b.sw],
                dilations=[1, 1],
                pads=[b.pad_h[0], b.pad_w[0], b.pad_h[1], b.pad_w[1]],
            )
        )
        nodes.append(
            helper.make_node(
                "Clip",
                [f"{prefix}_dw", "zero", "six"],
                [f"{prefix}_dw_r"],
                name=f"{prefix}_dw_relu6",
            )
        )
        cur = f"{prefix}_dw_r"
    if "pw" in stages:
        inits += [
            numpy_helper.from_array(w["pw"], f"{prefix}_pw_w"),
            numpy_helper.from_array(w["pb"], f"{prefix}_pw_b"),
        ]
        nodes.append(
            helper.make_node(
                "Conv",
                [cur, f"{prefix}_pw_w", f"{prefix}_pw_b"],
                [f"{prefix}_pw"],
                name=f"{prefix}_pw_conv",
                group=1,
                kernel_shape=[1, 1],
                strides=[1, 1],
                pads=[0, 0, 0, 0],
            )
        )
        nodes.append(
            helper.make_node(
                "Clip",
                [f"{prefix}_pw", "zero", "six"],
                [f"{prefix}_pw_r"],
                name=f"{prefix}_pw_relu6",
            )
        )
        cur = f"{prefix}_pw_r"
    return nodes, cur


def onnx_model(chain, weights, stages):
    """A graph x -> chain of blocks (each with the given stages) -> y; batch symbolic."""
    first, last = chain[0], chain[-1]
    if stages == ("pw",):
        in_shape = ["N", first.C, first.Ho, first.Wo]
    else:
        in_shape = ["N", first.C, first.H, first.W]
    out_c = last.Cout if "pw" in stages else last.C
    out_shape = ["N", out_c, last.Ho, last.Wo]
    inits = relu6_constants()
    nodes, cur = [], "x"
    for b in chain:
        n, cur = _onnx_block_nodes(b, weights[b.index], cur, f"b{b.index}", stages, inits)
        nodes += n
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "mobilenet_v1_" + "_".join(stages),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="pydsconv-bench"
    )
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def pointwise_chain_model(weights, bias, batch, c, hw):
    """x -> len(weights) C -> C 1x1 Conv + Clip(0, 6) layers -> y, fixed shape
    (bench/pointwise_chain.py)."""
    inits = relu6_constants()
    nodes, cur = [], "x"
    for i, w in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(
            helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[1, 1])
        )
        nodes.append(helper.make_node("Clip", [f"c{i}", "zero", "six"], [f"r{i}"]))
        cur = f"r{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    shape = [batch, c, hw, hw]
    graph = helper.make_graph(
        nodes,
        "pointwise_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    return model


def ort_session(model, threads, profile_prefix=None):
    """A CPU session at `threads` intra-op threads; with profile_prefix, ORT's
    own per-node profiler on (bench/ort_profile.py reads it)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # ORT's intra-op workers otherwise keep spinning for well over 50 ms
    # after each run and take the second core from whichever contestant runs
    # next (measured: pydsconv's 2-thread depthwise 4 ms alone, 200 ms right
    # after an ORT run).  ORT documents this switch for shared cores.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class OrtRunner:
    """Session + IO binding: the input bound zero-copy, the output ORT-allocated."""

    def __init__(self, sess, x):
        self.sess = sess
        self.x = x  # keep the bound buffer alive
        self.binding = sess.io_binding()
        self.binding.bind_cpu_input("x", x)
        self.binding.bind_output("y", "cpu")

    def __call__(self):
        self.sess.run_with_iobinding(self.binding)
        return self.binding.get_outputs()

    def result(self):
        self()
        return self.binding.copy_outputs_to_cpu()[0]


def build_sessions(ops, blocks, chosen, weights, threads):
    """{(op, block index): session}; the body's is ("body", 0); none for train."""
    sessions = {}
    for op in ops:
        if op == "train":  # ORT has no training here
            continue
        if op == "body":
            sessions[("body", 0)] = ort_session(
                onnx_model(blocks, weights, STAGES["body"]), threads
            )
        else:
            for b in op_blocks(op, blocks, chosen):
                sessions[(op, b.index)] = ort_session(onnx_model([b], weights, STAGES[op]), threads)
    return sessions
