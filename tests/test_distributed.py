"""Scale-out: DistributedDataParallel (gloo on the CPU, nccl on GPUs), with
torch.compile, and FSDP2 (fully_shard), two processes on 127.0.0.1. Each
rank's gradients after one step on its half of the batch must equal a single
process's on the whole batch."""
import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lstm_fused

WORLD = 2
TIMEOUT_S = 120  # the whole spawn, start-up included; a hung collective fails the test instead of CI
B, T, I, H = 4, 6, 5, 8


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = lstm_fused.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
        self.cell = lstm_fused.LSTMCell(2 * H, H)
        self.head = torch.nn.Linear(H, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        h, c = self.cell(out[:, -1])
        return self.head(h + c)


def _data():
    g = torch.Generator().manual_seed(7)
    return torch.randn(B, T, I, generator=g), torch.randn(B, 3, generator=g)


def _model():
    torch.manual_seed(3)
    return Model()


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)  # a mean: DDP's average of two halves is the whole


def _step(mode, backend, rank, device):
    """One forward/backward of `mode` on this rank's half of the batch; the full gradients."""
    model = _model().to(device)
    x, y = (t.to(device).chunk(WORLD)[rank] for t in _data())
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for m in (model.lstm, model.cell, model.head):
            fully_shard(m)
        fully_shard(model)
        net = model
    else:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None)
        if mode == "ddp_compile":
            net = torch.compile(net, backend="aot_eager")
    _loss(net, x, y).backward()
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad.full_tensor() if mode == "fsdp2" else p.grad  # FSDP2: the sharded DTensor, gathered
        grads[name] = g.detach().cpu()
    return grads


def _worker(rank, port, backend, modes, out_dir):
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        for mode in modes:  # one process group for all: spawning costs more than the steps
            try:
                result = _step(mode, backend, rank, device)
            except Exception as e:  # reported by the mode's own test
                result = f"{type(e).__name__}: {e}"
            torch.save(result, os.path.join(out_dir, f"{mode}{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(out_dir, backend, modes):
    ctx = mp.spawn(_worker, args=(_free_port(), backend, modes, str(out_dir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"{', '.join(modes)} on {backend} did not finish in {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return out_dir


def _check(out_dir, mode):
    model = _model()
    _loss(model, *_data()).backward()
    want = {n: p.grad for n, p in model.named_parameters()}
    for rank in range(WORLD):
        got = torch.load(out_dir / f"{mode}{rank}.pt")
        assert not isinstance(got, str), f"{mode} failed on rank {rank}: {got}"
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{mode}, rank {rank}, {name}: {m}")


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    return _spawn(tmp_path_factory.mktemp("gloo"), "gloo", ("ddp", "ddp_compile", "fsdp2"))


def test_ddp_gloo(gloo_run):
    _check(gloo_run, "ddp")


def test_ddp_compile_gloo(gloo_run):
    """torch.compile over DDP (aot_eager: the ops' fake kernels and C++ autograd, no C++ compiler)."""
    _check(gloo_run, "ddp_compile")


def test_fsdp2_gloo(gloo_run):
    """FSDP2 (torch.distributed.fsdp.fully_shard) per module and at the root, on the CPU with gloo."""
    _check(gloo_run, "fsdp2")


@pytest.mark.cuda
def test_ddp_nccl(tmp_path):
    if not dist.is_available() or not dist.is_nccl_available():
        pytest.skip("torch.distributed with nccl is not available in this torch build")
    if torch.cuda.device_count() < WORLD:
        pytest.skip(f"nccl needs {WORLD} CUDA devices, found {torch.cuda.device_count()}")
    _check(_spawn(tmp_path, "nccl", ("ddp",)), "ddp")
