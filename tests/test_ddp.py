"""Data parallelism: a model with neurodsl layers under DistributedDataParallel (gloo, 2 CPU processes) gets
the gradients of one process on the whole batch, and carried states stay per rank."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import neurodsl as nd

WORLD, T, BATCH = 2, 12, 8


def make_model(backend):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nd.zoo.LIF(learnable=("tau",), backend=backend),
                          nn.Linear(16, 4), nd.zoo.ALIF(learnable=("tau", "beta"), backend=backend))
    with torch.no_grad():                                # enough drive that both layers spike
        model[0].bias.add_(1.0)
        model[2].weight.mul_(3.0)
        model[2].bias.add_(0.5)
    return model


def data():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(T, BATCH, 6, generator=gen) * 2, torch.randn(T, BATCH, 4, generator=gen)


def loss_of(out, target):
    return ((out * target).sum(-1) ** 2).mean()  # a mean over the batch, as DDP's gradient averaging assumes


def _worker(rank, init_file, out_dir, backend):
    os.environ["TRITON_INTERPRET"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = DistributedDataParallel(make_model(backend))
    x, target = data()
    part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    for _ in range(2):                                   # two calls: states carry over, per rank
        loss_of(model(x[:, part]), target[:, part]).backward()
        nd.detach_states(model)                          # truncated BPTT between calls
    torch.save(dict(grads={n: p.grad for n, p in model.module.named_parameters()},
                    v=model.module[1].v.clone()), os.path.join(out_dir, f"{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_ddp_gradients_equal_one_process_on_the_whole_batch(backend):
    model = make_model(backend)
    x, target = data()
    for _ in range(2):
        loss_of(model(x), target).backward()
        nd.detach_states(model)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), tmp, backend), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(WORLD)]
    assert model[3].beta.grad.abs() > 0 and model[1].tau.grad.abs() > 0
    for name, param in model.named_parameters():
        for result in ranks:                             # DDP leaves every rank with the averaged gradient
            torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-5, atol=1e-6)
    v = torch.cat([r["v"] for r in ranks])               # each rank carried its own half of the batch
    torch.testing.assert_close(v, model[1].v)
