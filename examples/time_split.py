"""Split the time axis of a reset-free neuron over processes with ``neurodsl.distributed.TimeSplit``.

    torchrun --nproc-per-node=2 examples/time_split.py                     # CPU processes, gloo
    torchrun --nproc-per-node=4 examples/time_split.py --steps 65536        # one GPU per process, nccl

Every rank draws the same input (same seed), keeps its chunk of the T steps, runs the layer through
TimeSplit and takes one SGD step with the summed gradients. Each rank also runs the whole sequence on its
own with the sequential kernel and checks its chunk against it; rank 0 prints the result.
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.distributed as dist

import neurodsl as nd
from neurodsl.distributed import TimeSplit, split_time, sum_gradients


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")   # torchrun provides rank, world size and rendezvous
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    x = (torch.rand(args.steps, args.neurons, dtype=dtype) * 1.5).to(device)
    layer = nd.zoo.CubaLIF.without_reset()(v_decay=torch.full((args.neurons,), 0.8, dtype=dtype),
                                           learnable=("c_decay", "v_decay")).to(device)
    whole = copy.deepcopy(layer)
    whole.parallel = "sequential"

    chunk = split_time(x, rank, world)
    spikes = TimeSplit(layer)(chunk)
    (spikes.sum() / x.numel()).backward()                 # this rank's share of the loss
    sum_gradients(layer)                                  # full gradients on every rank
    torch.optim.SGD(layer.parameters(), lr=0.1).step()

    reference = whole(x)
    (reference.sum() / x.numel()).backward()
    same = torch.equal(spikes, split_time(reference, rank, world))
    grad_err = max(float((p.grad - q.grad).abs().max()) for p, q in zip(layer.parameters(), whole.parameters()))
    ok = torch.tensor([float(same)], device=device)
    err = torch.tensor([grad_err], dtype=torch.float64, device=device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    dist.all_reduce(err, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(f"world {world}, T={args.steps} ({len(chunk)} steps on rank 0), {args.neurons} neurons, {args.dtype}: "
              f"spikes equal to one process: {bool(ok.item())}, max gradient difference {err.item():.1e}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
