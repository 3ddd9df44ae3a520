"""Distributed training with pydsconv.torch modules (issue 20, item 6):
DistributedDataParallel with the gloo backend, two processes on 127.0.0.1,
gives the parameters of a single-process run on the concatenated batch.
"""

import os
import socket

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn
pytestmark = pytest.mark.slow  # two subprocesses

STEPS, BATCH, WORLD = 4, 6, 2


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        pt.SeparableConv2d(3, 8, 3, stride=2, padding=1, mid_activation="relu6"),
        nn.GroupNorm(2, 8),  # per-sample (BatchNorm's statistics would differ per shard)
        nn.ReLU(),
        pt.DepthwiseConv2d(8, 3, padding="same", depth_multiplier=2, activation="relu"),
        pt.PointwiseConv2d(16, 4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).double()


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, BATCH * WORLD, 3, 9, 9, dtype=torch.float64, generator=g)
    y = torch.randn(STEPS, BATCH * WORLD, 4, dtype=torch.float64, generator=g)
    return x, y


def _train(model, xs, ys):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in zip(xs, ys):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        xs, ys = _data()
        shard = slice(rank * BATCH, (rank + 1) * BATCH)
        _train(model, xs[:, shard], ys[:, shard])
        torch.save(
            {k: v for k, v in model.module.named_parameters()},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_two_processes_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ref = _model()  # one process, the concatenated batch, same optimiser and steps
    _train(ref, *_data())
    want = dict(ref.named_parameters())
    init = dict(_model().named_parameters())
    assert all(not torch.equal(want[k], init[k]) for k in want)  # training moved them
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k].detach(), rtol=1e-12, atol=1e-12)
