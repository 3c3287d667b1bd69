"""Time splitting across processes (neurodsl.distributed) against the single-process sequential kernel.

One spawn of 4 gloo processes (file:// rendezvous, so no port can clash) runs every case in three process
groups: ranks [0, 1] (world 2), [1, 2, 3] (world 3, group ranks differ from global ranks) and the default
group of 4. Each rank saves its chunk's spikes, states and gradients (parameters summed with sum_gradients);
the test process compares them, concatenated, with the layer run with parallel="sequential" on the whole
sequence in float64: spikes exactly, states and gradients (inputs, initial states, learnable parameters
including a learnable surrogate alpha) to 1e-10. T is never divisible by every world size; "short" gives
the last rank of 4 an empty chunk.
"""
import os
import random
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import neurodsl as nd
from neurodsl.analysis import classify
from neurodsl.distributed import TimeSplit, chunk_transition, split_time, sum_gradients

F64 = torch.float64
_RNG = random.Random(601)
_C = [round(_RNG.uniform(-0.3, 0.3), 3) for _ in range(3)]


class Random2(nd.Neuron):
    """A random 2-state linear neuron with two inputs; A depends on the input y (linear-input-dependent)."""

    p = nd.State(0.0)
    q = nd.State(0.2)
    g = nd.Param(round(_RNG.uniform(0.3, 0.8), 3))
    c = nd.Param(round(_RNG.uniform(0.5, 1.5), 3))
    v_th = nd.Param(0.6)

    def charge(self, x, y):
        return dict(p=nd.sigmoid(y) * self.p + _C[0] * self.q + x,
                    q=_C[1] * self.p + self.g * self.q + self.c * x + _C[2] * y)

    def fire(self):
        return self.q + 0.5 * self.p - self.v_th


def _vec(lo, hi, n):
    return torch.linspace(lo, hi, n, dtype=F64)


# name -> (layer factory, T, per-step shape, number of inputs, states given as initial state)
CASES = {
    "lif_noreset": (lambda **kw: nd.zoo.LIFNoReset(tau=_vec(1.5, 4.0, 3), v_th=torch.tensor(0.8, dtype=F64),
                                                   learnable=("tau", "v_th"),
                                                   surrogate=nd.surrogate.ATan(learnable=True), **kw),
                    11, (2, 3), 1, ("v",)),
    "lif_without_reset": (lambda **kw: nd.zoo.LIF.without_reset()(tau=torch.tensor(3.0, dtype=F64),
                                                                  v_reset=torch.tensor(0.1, dtype=F64),
                                                                  learnable=("tau", "v_reset"), **kw),
                          9, (4,), 1, ()),
    "cuba_without_reset": (lambda **kw: nd.zoo.CubaLIF.without_reset()(
        c_decay=torch.tensor(0.6, dtype=F64), v_decay=_vec(0.5, 0.9, 4), learnable=("c_decay", "v_decay"), **kw),
        10, (2, 4), 1, ("i", "v")),
    "random_2state": (lambda **kw: Random2(g=torch.tensor(Random2._params_decl["g"].default, dtype=F64),
                                           c=_vec(0.8, 1.2, 5), learnable=("g", "c"), **kw),
                      7, (5,), 2, ("p", "q")),
    "short": (lambda **kw: nd.zoo.LIFNoReset(tau=torch.tensor(2.0, dtype=F64), learnable=("tau",), **kw),
              3, (3,), 1, ("v",)),
}
GROUPS = {2: [0, 1], 3: [1, 2, 3], 4: [0, 1, 2, 3]}


def _data(name):
    """Inputs, a second sequence (carried-state check), initial states and loss weights, all float64."""
    _, T, shape, n_in, given = CASES[name]
    gen = torch.Generator().manual_seed(sorted(CASES).index(name))
    draw = lambda *s: torch.rand(*s, generator=gen, dtype=F64)  # noqa: E731
    xs = [draw(T, *shape) * 1.5 for _ in range(n_in)]
    xs2 = [draw(4, *shape) * 1.5 for _ in range(n_in)]
    init = {s: draw(*shape) for s in given}
    weights = torch.randn(1 + 2, T, *shape, generator=gen, dtype=F64)  # spikes, then (up to) two states
    return xs, xs2, init, weights


def _loss(spikes, seqs, weights, sl=slice(None)):
    return (spikes * weights[0][sl]).sum() + sum((v * w[sl]).sum() for v, w in zip(seqs.values(), weights[1:]))


def _run_chunk(name, group, rank, world):
    """This rank's part of one case: forward, backward, summed parameter gradients, a continued second call."""
    make = CASES[name][0]
    xs, xs2, init, weights = _data(name)
    layer = make(store_state_seqs=True)
    chunks = [split_time(x, rank, world).clone().requires_grad_() for x in xs]
    init = {k: v.clone().requires_grad_() for k, v in init.items()}
    spikes = TimeSplit(layer, group)(*chunks, state=init or None)
    seqs = dict(layer.state_seqs)
    sizes = [len(c) for c in torch.tensor_split(torch.arange(xs[0].shape[0]), world)]
    _loss(spikes, seqs, weights, slice(sum(sizes[:rank]), sum(sizes[:rank + 1]))).backward()
    sum_gradients(layer, group)
    final = {s: layer.state_value(s).clone() for s in layer.spec.states}
    with torch.no_grad():
        spikes2 = TimeSplit(layer, group)(*[split_time(x, rank, world) for x in xs2])
    return dict(spikes=spikes.detach(), seqs={k: v.detach() for k, v in seqs.items()},
                grad_x=[c.grad for c in chunks], grad_init={k: v.grad for k, v in init.items()},
                grad_params={n: p.grad.clone() for n, p in layer.named_parameters()}, final=final,
                spikes2=spikes2, form=dict(layer.last_form))


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=4)
    groups = {2: dist.new_group(GROUPS[2]), 3: dist.new_group(GROUPS[3]), 4: None}  # every rank creates each group
    results = {}
    for world, group in groups.items():
        if rank in GROUPS[world]:
            for name in CASES:
                results[world, name] = _run_chunk(name, group, GROUPS[world].index(rank), world)
    torch.save(results, os.path.join(out_dir, f"{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def _reference(name):
    make = CASES[name][0]
    xs, xs2, init, weights = _data(name)
    layer = make(store_state_seqs=True, parallel="sequential")
    xs = [x.clone().requires_grad_() for x in xs]
    init = {k: v.clone().requires_grad_() for k, v in init.items()}
    spikes = layer(*xs, state=init or None)
    seqs = dict(layer.state_seqs)
    _loss(spikes, seqs, weights).backward()
    final = {s: layer.state_value(s).detach().clone() for s in layer.spec.states}
    with torch.no_grad():
        spikes2 = layer(*xs2)
    make(parallel="scan")(*xs)  # generate the coefficient module once, before the workers need it
    return dict(spikes=spikes.detach(), seqs={k: v.detach() for k, v in seqs.items()}, grad_x=[x.grad for x in xs],
                grad_init={k: v.grad for k, v in init.items()}, final=final, spikes2=spikes2,
                grad_params={n: p.grad for n, p in layer.named_parameters()})


@pytest.fixture(scope="module")
def runs():
    """(reference per case, results per global rank) from one spawn of 4 processes."""
    references = {name: _reference(name) for name in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=4, join=True)
        ranks = [torch.load(os.path.join(tmp, f"{r}.pt")) for r in range(4)]
    return references, ranks


def close(actual, expected, what, tol=1e-10):
    assert actual.shape == expected.shape, f"{what}: {tuple(actual.shape)} != {tuple(expected.shape)}"
    tol = max(tol, 1e-5 if actual.dtype == torch.float32 else 0.0)  # a float32 parameter's gradient
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    err = float((actual.to(F64) - expected.to(F64)).abs().max()) if expected.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("name", list(CASES))
def test_time_split_equals_single_process(runs, name, world):
    references, ranks = runs
    ref = references[name]
    parts = [ranks[r][world, name] for r in GROUPS[world]]
    cat = lambda key: torch.cat([p[key] for p in parts])  # noqa: E731
    assert [len(p["spikes"]) for p in parts] == [len(c) for c in torch.tensor_split(ref["spikes"], world)]
    assert torch.equal(cat("spikes"), ref["spikes"]), "spikes differ"
    for s, v in ref["seqs"].items():
        close(torch.cat([p["seqs"][s] for p in parts]), v, f"state {s}")
    for i, g in enumerate(ref["grad_x"]):
        close(torch.cat([p["grad_x"][i] for p in parts]), g, f"grad input {i}")
    for s, g in ref["grad_init"].items():
        close(parts[0]["grad_init"][s], g, f"grad initial {s}")
        assert all(p["grad_init"][s] is None for p in parts[1:]), "only rank 0 reads the initial state"
    assert ref["grad_params"], "every case has learnable parameters"
    for rank, p in enumerate(parts):  # sum_gradients left the full gradient on every rank
        assert p["form"] == {"form": "time-split", "rank": rank, "world": world}
        for n, g in ref["grad_params"].items():
            close(p["grad_params"][n], g, f"grad {n}")
        for s, v in ref["final"].items():
            close(p["final"][s], v, f"carried {s}")
    assert torch.equal(cat("spikes2"), ref["spikes2"]), "the second call did not continue from the carried state"


def test_case_coverage():
    """Uneven splits, an empty chunk, 2-state neurons and a time-varying A are all exercised."""
    assert all(any(T % world for world in GROUPS) for _, T, *_ in CASES.values())
    assert CASES["short"][1] < 4
    verdicts = {name: classify(CASES[name][0]().spec).kind for name in CASES}
    assert verdicts["random_2state"] == "linear-input-dependent"
    assert len(Random2.spec.states) == len(nd.zoo.CubaLIF.spec.states) == 2


def test_split_time():
    x = torch.arange(10.0)[:, None]
    for world in (1, 3, 4, 12):
        chunks = [split_time(x, r, world) for r in range(world)]
        assert torch.equal(torch.cat(chunks), x)
        assert [len(c) for c in chunks] == [len(c) for c in torch.tensor_split(x, world)]
        assert max(len(c) for c in chunks) - min(len(c) for c in chunks) <= 1


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("T", [0, 1, 5, 8])
def test_chunk_transition_is_the_composed_affine_map(k, T):
    gen = torch.Generator().manual_seed(k * 10 + T)
    A = torch.randn(T, 4, k, k, generator=gen, dtype=F64) * 0.5
    b = torch.randn(T, 4, k, generator=gen, dtype=F64)
    M, u = chunk_transition(A, b)
    expect_M, expect_u = torch.eye(k, dtype=F64).expand(4, k, k), torch.zeros(4, k, dtype=F64)
    for t in range(T):
        expect_M, expect_u = A[t] @ expect_M, (A[t] @ expect_u[..., None])[..., 0] + b[t]
    assert M.shape == (4, k, k) and u.shape == (4, k)
    close(M, expect_M, "M", 1e-12)
    close(u, expect_u, "u", 1e-12)


def test_wraps_reset_free_linear_neurons_only():
    """ND601 at construction; the errors are tested by code in test_errors.py."""
    for ok in (nd.zoo.LIFNoReset(), nd.zoo.LIF.without_reset()(), nd.zoo.CubaLIF.without_reset()(), Random2()):
        assert isinstance(TimeSplit(ok).layer, nd.Neuron)
    for bad in (nd.zoo.LIF(), nd.zoo.ALIF(), nd.zoo.QIF.without_reset()()):
        with pytest.raises(nd.NeuroDSLError) as info:
            TimeSplit(bad)
        assert info.value.code == "ND601" and type(bad).__name__ in str(info.value)
