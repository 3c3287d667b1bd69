"""float64 gradchecks of the derived backward kernels, and of the surrogates' symbolic derivatives.

With ``smooth=True`` the spike Θ(u) is replaced by the surrogate primitive in the kernels (and the
reference), so the whole layer is a smooth function and ``torch.autograd.gradcheck`` can compare the
generated backward against finite differences of the generated forward.
"""
import math

import numpy as np
import pytest
import sympy as sp
import torch
from torch.func import functional_call

import neurodsl as nd
from neurodsl import zoo

from helpers import NEURONS, compare, require_safe_inputs

U, A = sp.symbols("u alpha", real=True)
_MATH = [{"sigmoid": lambda x: 1.0 / (1.0 + math.exp(-x))}, "math"]


def smooth_layer(cls, backend="torch", surrogate=None, **kw):
    extra, learnable = NEURONS[cls]
    surrogate = surrogate or nd.surrogate.ATan(learnable=True)
    return cls(backend=backend, smooth=True, surrogate=surrogate, learnable=learnable, **{**extra, **kw}).double()


def gradcheck_layer(layer, T=4, shape=(3,), seed=0, vector_init=True):
    """gradcheck w.r.t. the input(s), every learnable parameter (incl. alpha) and every initial state."""
    gen = torch.Generator().manual_seed(seed)
    xs = [0.8 + 0.6 * torch.randn((T, *shape), generator=gen, dtype=torch.float64) for _ in layer.spec.inputs]
    names = [n for n, _ in layer.named_parameters()]
    values = [p.detach().clone() for _, p in layer.named_parameters()]
    inits = [0.1 * torch.randn(shape if vector_init else (), generator=gen, dtype=torch.float64)
             for _ in layer.spec.states]
    n_x, n_p = len(xs), len(names)
    assert "surrogate_alpha" in names or not layer.surrogate.learnable

    def fn(*tensors):
        x, p, v0 = tensors[:n_x], tensors[n_x:n_x + n_p], tensors[n_x + n_p:]
        layer.reset_state()
        spikes = functional_call(layer, dict(zip(names, p)), tuple(x),
                                 {"state": dict(zip(layer.spec.states, v0))})
        return (spikes, *[layer._carried[s] for s in layer.spec.states])

    inputs = tuple(t.requires_grad_() for t in [*xs, *values, *inits])
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    return fn, inputs


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_gradcheck_zoo_torch(cls):
    layer = smooth_layer(cls)
    gradcheck_layer(layer)


@pytest.mark.parametrize("variant", [dict(reset_mode="soft", decay_input=False), dict(reset_mode="hard")], ids=str)
def test_gradcheck_lif_variants(variant):
    gradcheck_layer(smooth_layer(zoo.LIF, **variant))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_smooth_detach_reset_matches_reference(backend):
    """detach_reset drops ∂R/∂s on purpose (not a true gradient): compare with the reference in fp64."""
    surrogate = nd.surrogate.Sigmoid(learnable=True)
    layer = smooth_layer(zoo.ALIF, backend=backend, detach_reset=True, surrogate=surrogate)
    x = 0.8 + 0.5 * torch.randn(4, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    compare(layer, x)
    layer.reset_state()
    full = smooth_layer(zoo.ALIF, backend=backend, surrogate=surrogate)
    g_detached = torch.autograd.grad(layer(x.clone().requires_grad_()).sum(), [layer.tau])[0]
    g_full = torch.autograd.grad(full(x.clone().requires_grad_()).sum(), [full.tau])[0]
    assert not torch.allclose(g_detached, g_full)


def test_gradcheck_vector_params_and_state_seqs():
    layer = smooth_layer(zoo.ALIF, tau=torch.tensor([2.0, 2.5, 3.0]), beta=torch.tensor([1.0, 1.8, 0.5]),
                         store_state_seqs=True)
    gen = torch.Generator().manual_seed(3)
    x = (0.8 + 0.5 * torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    tau = layer.tau.detach().clone().requires_grad_()
    beta = layer.beta.detach().clone().requires_grad_()

    def fn(x, tau, beta):
        layer.reset_state()
        s = functional_call(layer, {"tau": tau, "beta": beta}, (x,))
        return s, layer.state_seqs["v"], layer.state_seqs["a"]

    assert torch.autograd.gradcheck(fn, (x, tau, beta), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cls", [zoo.ALIF, zoo.Izhikevich], ids=lambda c: c.__name__)
def test_gradcheck_triton_interpreter(cls):
    layer = smooth_layer(cls, backend="triton", surrogate=nd.surrogate.Sigmoid(learnable=True))
    gradcheck_layer(layer, T=3, shape=(2,))


@pytest.mark.parametrize("sg_cls", [s for s in nd.surrogate.ALL if s.__name__ in ("Sigmoid", "Erf", "SoftSign")],
                         ids=lambda c: c.__name__)
def test_gradcheck_smooth_surrogates(sg_cls):
    gradcheck_layer(smooth_layer(zoo.ALIF, surrogate=sg_cls(learnable=True)))


def test_smooth_spikes_stay_between_0_and_1_for_every_step_surrogate():
    x = torch.linspace(-3, 3, 40, dtype=torch.float64)[:, None] * torch.ones(1, 3, dtype=torch.float64)
    for sg_cls in nd.surrogate.ALL:
        if not sg_cls().is_step():
            continue
        spikes = smooth_layer(zoo.LIF, surrogate=sg_cls())(x)
        assert bool(((spikes >= 0) & (spikes <= 1)).all()), sg_cls.__name__


def test_smooth_module_matches_smooth_reference():
    layer = smooth_layer(zoo.Izhikevich)
    x = 0.8 + 0.5 * torch.randn(5, 4, dtype=torch.float64)
    spikes, _, _ = compare(layer, x)
    assert ((spikes > 0) & (spikes < 1)).any()  # smooth spikes are not 0/1


# -- surrogate derivatives ----------------------------------------------------------------------
CLOSED_FORMS = {  # g'(u) as documented in each class docstring
    "Sigmoid": lambda u, a: a * (1 / (1 + np.exp(-a * u))) * (1 - 1 / (1 + np.exp(-a * u))),
    "ATan": lambda u, a: (a / 2) / (1 + (np.pi * a * u / 2) ** 2),
    "PiecewiseQuadratic": lambda u, a: np.maximum(0.0, a - a ** 2 * np.abs(u)),
    "PiecewiseExp": lambda u, a: (a / 2) * np.exp(-a * np.abs(u)),
    "SoftSign": lambda u, a: 1 / (2 * a * (1 / a + np.abs(u)) ** 2),
    "SuperSpike": lambda u, a: 1 / (1 + a * np.abs(u)) ** 2,
    "Erf": lambda u, a: a / np.sqrt(np.pi) * np.exp(-(a * u) ** 2),
    "Rect": lambda u, a: np.where(np.abs(u) < 0.5 / a, a, 0.0),
}
GRID = np.linspace(-2.3, 2.3, 47) + 0.0137  # avoids the kinks at |u| = 1/alpha, 0.5/alpha for these alphas
ALPHAS = (None, 0.7, 3.1)


def _torch_primitive(sg, u, alpha):
    return sg.primitive(torch.as_tensor(u, dtype=torch.float64), torch.as_tensor(alpha, dtype=torch.float64))


@pytest.mark.parametrize("sg_cls", nd.surrogate.ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
def test_surrogate_derivative_matches_finite_differences(sg_cls, alpha):
    sg = sg_cls(alpha=alpha)
    a = sg.alpha
    d = sp.lambdify((U, A), sg.derivative(U, A), modules=_MATH)
    sym = np.array([float(d(float(u), a)) for u in GRID])
    h = 1e-6
    fd = ((_torch_primitive(sg, GRID + h, a) - _torch_primitive(sg, GRID - h, a)) / (2 * h)).numpy()
    np.testing.assert_allclose(sym, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(sym, CLOSED_FORMS[sg_cls.__name__](GRID, a), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sg_cls", nd.surrogate.ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("alpha", ALPHAS, ids=str)
def test_surrogate_alpha_derivative_matches_finite_differences(sg_cls, alpha):
    sg = sg_cls(alpha=alpha)
    a = sg.alpha
    d = sp.lambdify((U, A), sg.alpha_derivative(U, A), modules=_MATH)
    sym = np.array([float(d(float(u), a)) for u in GRID])
    h = 1e-6
    fd = ((_torch_primitive(sg, GRID, a + h) - _torch_primitive(sg, GRID, a - h)) / (2 * h)).numpy()
    np.testing.assert_allclose(sym, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sg_cls", nd.surrogate.ALL, ids=lambda c: c.__name__)
def test_surrogate_primitive_is_a_step_like_function(sg_cls):
    """Θ's stand-ins are monotone non-decreasing and positive-sloped at 0."""
    sg = sg_cls()
    g = _torch_primitive(sg, GRID, sg.alpha)
    assert torch.all(g[1:] - g[:-1] >= -1e-12)
    d = sp.lambdify((U, A), sg.derivative(U, A), modules=_MATH)
    assert d(0.0, sg.alpha) > 0


def test_custom_surrogate_derivatives():
    prim = nd.surrogate.Custom(primitive=lambda u, a: nd.sigmoid(a * u), alpha=3.0)
    grad = nd.surrogate.Custom(gradient=lambda u, a: a / (1 + (a * u) ** 2), alpha=3.0)
    assert sp.simplify(prim.derivative(U, A) - nd.surrogate.Sigmoid().derivative(U, A)) == 0
    assert sp.simplify(grad.derivative(U, A) - A / (1 + (A * U) ** 2)) == 0
    assert grad.has_primitive is False and prim.has_primitive is True


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_learnable_alpha_gradient_non_smooth(backend):
    """d loss / d alpha = Σ gspike_total ∂g/∂alpha(u): checked against the reference's autograd."""
    layer = zoo.LIF(backend=backend, surrogate=nd.surrogate.PiecewiseExp(alpha=1.3, learnable=True))
    xs = require_safe_inputs(layer, 5, (4, 3), seed=9)
    _, _, grads = compare(layer, *xs)
    assert grads["surrogate_alpha"].shape == () and grads["surrogate_alpha"].abs() > 0


class AtanNeuron(nd.Neuron):
    """Uses nd.atan in its equations (Triton prints it through a template helper)."""

    v = nd.State(0.0)
    tau = nd.Param(2.0)

    def charge(self, x):
        return dict(v=self.v + (nd.atan(3.0 * x) - self.v) / self.tau)

    def fire(self):
        return self.v - 0.9

    def reset(self, s):
        return dict(v=self.v * (1 - s))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fp64_atan_is_fp64_accurate(backend):
    """A float64 module computes in float64: nd.atan (and the ATan primitive in smooth mode) included."""
    layer = AtanNeuron(backend=backend, learnable=("tau",)).double()
    xs = require_safe_inputs(layer, 4, (2, 3), seed=2, dtype=torch.float64)
    compare(layer, *xs)  # fp64 tolerance 1e-10
    smooth = smooth_layer(zoo.LIF, backend=backend)  # ATan primitive (atan) in the forward kernel
    compare(smooth, 0.8 + 0.5 * torch.randn(4, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
