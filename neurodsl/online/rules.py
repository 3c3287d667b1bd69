"""Online learning rules over a chain of layers and neurons: memory independent of the sequence length.

Every rule runs the model one step at a time (``out = rule.step(x_t)``), carries neuron states without a graph
through time, and turns ``rule.backward(loss_t)`` into ``.grad`` of the parameters (accumulated; the optimizer
steps when you like). What differs is how a parameter's effect through time is followed:

* :class:`EProp` (alias :class:`OSTL`): per neuron the k×k eligibility trace of the derived Jacobians,
  ε_t = J_t ε_{t-1} + K_t z_t per synapse of the ``nn.Linear`` feeding it, ε^θ_t = J_t ε^θ_{t-1} + G_t for neuron
  parameters, with the learning signal ∂L_t/∂s_t of the same step. Exact for one layer (nothing recurs
  across neurons), an approximation (no credit through later layers' states) in deeper chains.
* :class:`OTTT`: the synapse trace replaced by a presynaptic trace â_t = λ â_{t-1} + z_t with the derived leak
  λ of the neuron (reset ignored); neuron parameters keep the exact per-neuron trace.
* :class:`SLTT`: no trace at all, only the same-step (spatial) gradient.
* :class:`RTRL`: the sensitivities of every state to every parameter, carried forward (forward-mode AD of
  the whole chain): exact for any chain, O(parameters) memory per neuron. The test oracle.

Parameters of modules after the last neuron (a readout) get their exact same-step gradient from autograd.
"""
from __future__ import annotations

import sympy as sp
import torch
from torch import nn

from ..analysis.jacobians import jacobians
from ..errors import OnlineError
from ..neuron import Neuron
from ..functional import reset_states
from .factor import factorisation
from .model import NeuronUnit, accumulate, chain, check_chain, trainable

#: Largest chunk of a per-synapse trace updated at once (elements): bounds the temporaries of a step.
CHUNK_ELEMENTS = 1 << 18


class OnlineRule:
    """Base class: a model run step by step, with per-step ``backward``. Subclasses set how traces work."""

    name = ""
    #: keep per-neuron parameter traces through time (False: same-step derivative only)
    temporal_params = True

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = chain(model)
        check_chain(self.modules)
        self.units = {i: NeuronUnit(m) for i, m in enumerate(self.modules) if isinstance(m, Neuron)}
        self.synapse_of = self._synapses()
        self.reset()

    # -- structure -----------------------------------------------------------------------------------------
    def _synapses(self) -> dict[int, int]:
        """neuron index -> index of the parameterised module feeding it (its synapse), for the trace rules."""
        out, last_param = {}, None
        for i, m in enumerate(self.modules):
            if i in self.units:
                if last_param is not None:
                    out[i] = last_param
                last_param = None
            elif trainable(m):
                if last_param is not None:
                    raise OnlineError("ND902", f"{self.name}: {type(self.modules[last_param]).__name__} and "
                                               f"{type(m).__name__} both have parameters and feed one neuron "
                                               "layer; give each neuron layer one parameterised module (or use "
                                               "'sltt' / 'rtrl')")
                last_param = i if i + 1 in self.units else None
                if last_param is None and any(j > i for j in self.units):
                    raise OnlineError("ND902", f"{self.name}: {type(m).__name__} (module {i}) does not feed a neuron "
                                               "layer directly; put parameter-free modules (Flatten, pooling) "
                                               "before it, or use 'sltt' / 'rtrl'")
        return out

    # -- the user's loop -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new sequence: states and traces back to their initial values (gradients are kept)."""
        reset_states(self.model)
        for unit in self.units.values():
            unit.states = None
        self._anchor = torch.zeros((), requires_grad=True)      # every step's spikes join the loss's graph
        self._trace = {i: {} for i in self.units}
        self._leak_cache = {}                                         # values cached per sequence (OTTT)
        self._signal = {i: None for i in self.units}

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One step of the model on ``x`` [B, ...]; the output keeps the same-step graph for the loss."""
        self._flush()
        h = x
        for i, module in enumerate(self.modules):
            if i in self.units:
                h = self._neuron_step(i, h)
            elif i in self.synapse_of.values():
                h = self._synapse_step(i, module, h)
            else:
                h = module(h)
        return h

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate ∂loss/∂θ (this rule's estimate) into ``.grad``; ``loss`` depends on the last step's output."""
        for i in self.units:
            self._signal[i] = None
        if loss.requires_grad:
            loss.backward()
        for i in self.units:
            self._accumulate(i, self._signal[i])

    def _record(self, i):
        def record(grad):
            g = grad.detach().reshape(grad.shape[0], -1).to(self.units[i].cdt)
            self._signal[i] = g if self._signal[i] is None else self._signal[i] + g
        return record

    # -- neurons: forward values and neuron-local traces in one generated step ------------------------------
    def _neuron_step(self, i: int, current: torch.Tensor) -> torch.Tensor:
        """Forward values and the neuron-local tangents [D, B, n] in one generated step: direction 0 is ds/dI of
        this step, then one per learnable parameter, then the bias. Directions lead, so the per-neuron values
        [B, n] broadcast along the outermost dimension only (the fast path of elementwise ops)."""
        unit = self.units[i]
        values = unit.values(current)
        trace = self._trace[i]
        if "local" not in trace:
            self._init_local(i, unit, values)
        self._prepare(i, unit)
        params = unit.params("d")
        spike, new, tspike, tnew = unit.tangent_step(unit.states, values, params, trace["local"], trace["tI"],
                                                     trace["tp"])
        self._before_update(i, unit, values, params)
        unit.states = new
        for t in tnew:
            if self.temporal_params:
                t[0].zero_()
            else:
                t.zero_()
        trace["local"] = tnew
        trace["readout"] = tspike                                     # ds/dI, ds/dθ, ds/db of this step
        return unit.output(current, spike, tspike[0], self._record(i), self._anchor)

    def _init_local(self, i, unit, values, extra: int = 0):
        """The neuron-local tangents at the start: ds/dI, the parameters', the bias', then ``extra`` directions
        that a rule sets itself (``_prepare``)."""
        bias = self._bias(i)
        P = len(unit.learnable)
        D = 1 + P + (bias is not None) + extra
        trace = self._trace[i]
        trace["bias_at"] = 1 + P
        trace["local"] = [values.new_zeros(D, unit.batch, unit.n) for _ in unit.states]
        ti = values.new_zeros(D, 1, 1)
        ti[0] = 1.0                                                  # direction 0: ds/dI of this step
        if bias is not None:
            ti[1 + P] = 1.0                                          # then the bias trace
        trace["tI"] = ti
        trace["tp"] = [torch.nn.functional.one_hot(torch.tensor(1 + q), D).to(values.dtype).reshape(D, 1, 1)
                       for q in range(P)]
        for q, name in enumerate(unit.learnable):
            for m in unit.starts_at(name):                          # a state that starts at the parameter
                trace["local"][m][1 + q] = 1.0

    def _prepare(self, i: int, unit) -> None:
        """Hook: set a rule's own tangent directions before the step."""

    def _bias(self, i: int):
        """The bias of the neuron's synapse when this rule follows it with a per-neuron trace."""
        return None

    def _before_update(self, i, unit, values, params):
        """Hook: called with the step's values before the states move on (per-synapse traces use it)."""

    def _flush(self) -> None:
        """Hook: finish trace updates that waited for a learning signal."""

    def _synapse_step(self, i: int, module: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """The synapse's output without the parameters' same-step gradient (the rule gives theirs)."""
        if type(module) is nn.Linear:
            bias = None if module.bias is None else module.bias.detach()
            return nn.functional.linear(h, module.weight.detach(), bias)
        params = {n: p.detach() for n, p in module.named_parameters()}
        return torch.func.functional_call(module, params, (h,))

    def _accumulate(self, i: int, signal: torch.Tensor | None) -> None:
        """Neuron parameters: Σ_b,n signal · ds/dθ (from the traces); then the synapse (rule specific)."""
        if signal is None:
            return
        unit, readout = self.units[i], self._trace[i]["readout"]
        for q, name in enumerate(unit.learnable):
            accumulate_param(unit, name, signal * readout[1 + q])

    def gradients_of(self) -> dict[str, torch.Tensor]:
        """The accumulated ``.grad`` of every trainable parameter of the model, by name."""
        return {n: p.grad for n, p in self.model.named_parameters() if p.requires_grad and p.grad is not None}


def accumulate_param(unit: NeuronUnit, name: str, values: torch.Tensor) -> None:
    """[B, n] contributions to neuron parameter ``name``: straight into its ``.grad`` when it has one value per
    neuron or one in all (no autograd call), else through the broadcast that made it per neuron."""
    total = values.sum(0)
    tensor = unit.param_tensor(name)
    if tensor.numel() == 1:
        accumulate(tensor, total.sum().reshape(tensor.shape))
    elif tensor.numel() == total.numel():                     # broadcast to the feature shape was the identity
        accumulate(tensor, total.reshape(tensor.shape))
    else:
        accumulate(unit.flat_param(name), total)


class EProp(OnlineRule):
    """e-prop / OSTL: exact per-neuron eligibility traces (k×k, from the derived Jacobians) per synapse of the
    ``nn.Linear`` feeding each neuron layer, and per neuron parameter and bias; same-step learning signals.

    Memory: k·B·n_out·n_in per Linear (independent of T); the trace is updated in chunks of inputs in place.
    """

    name = "eprop"

    def __init__(self, model: nn.Module, factorise: bool = True):
        """``factorise=False``: the general per-synapse trace even where its factorised form is exact (when J
        and K are constant and J diagonal: neurodsl.online.factor)."""
        self.factorise = factorise
        super().__init__(model)

    def _init_local(self, i, unit, values, extra=0):
        j = self.synapse_of.get(i)
        learns = j is not None and self.modules[j].weight.requires_grad
        factor = factorisation(unit) if self.factorise and learns else None
        self._trace[i]["factor"] = factor
        super()._init_local(i, unit, values, extra + (len(factor.groups) if factor else 0))

    def _prepare(self, i, unit):
        """Factorised trace: the state tangents of group g's direction start at c_m (the rest stay zero)."""
        trace = self._trace[i]
        factor = trace["factor"]
        if factor is None:
            return
        first = trace["local"][0].shape[0] - len(factor.groups)
        for g, states in enumerate(factor.values(unit)[1]):
            for m, c in states:
                trace["local"][m][first + g].copy_(c.expand(unit.batch, unit.n) if c.numel() > 1 else c)

    def _synapses(self):
        out = super()._synapses()
        for i, j in out.items():
            if not isinstance(self.modules[j], nn.Linear):
                raise OnlineError("ND902", f"eprop keeps one trace per synapse, which needs an nn.Linear feeding "
                                           f"{type(self.modules[i]).__name__}, got {type(self.modules[j]).__name__}; "
                                           "use 'ottt' or 'sltt' for convolutions (or 'rtrl' for small models)")
        return out

    def _bias(self, i):
        j = self.synapse_of.get(i)
        bias = None if j is None else self.modules[j].bias
        return bias if bias is not None and bias.requires_grad else None

    def _synapse_step(self, i, module, h):
        self._inputs = getattr(self, "_inputs", {})
        self._inputs[i] = h.detach()
        return super()._synapse_step(i, module, h)

    def _before_update(self, i, unit, values, params):
        j = self.synapse_of.get(i)
        if j is not None and self.modules[j].weight.requires_grad:
            z = self._inputs[j].reshape(unit.batch, -1).to(unit.cdt)
            self._trace[i]["pending"] = (unit.states, values, z, params)

    def _flush(self):
        for i in self.units:
            if self._trace[i].get("pending") is not None:
                self._synapse_update(i, None)

    def _accumulate(self, i, signal):
        super()._accumulate(i, signal)
        bias = self._bias(i)
        if signal is not None and bias is not None:
            accumulate(bias, (signal * self._trace[i]["readout"][self._trace[i]["bias_at"]]).sum(0))
        if self._trace[i].get("pending") is not None:
            self._synapse_update(i, signal)

    def _synapse_update(self, i: int, signal: torch.Tensor | None) -> None:
        """ε ← J ε + K z for every synapse (chunks of inputs, in place); with a signal, ∂L/∂W += Σ_b L·e.

        Traces are [n_in, n, B] per state: a chunk of inputs is contiguous, and the per-neuron values
        ([1, n, B]) broadcast along the outermost dimension only (the fast path of elementwise ops)."""
        unit, trace = self.units[i], self._trace[i]
        if trace["factor"] is not None:
            return self._factorised_update(i, signal)
        prev, current, z, params = trace.pop("pending")
        n, B, n_in = unit.n, unit.batch, z.shape[1]
        if "synapse" not in trace:
            trace["synapse"] = [z.new_zeros(n_in, n, B) for _ in prev]
        E = trace["synapse"]
        values = [v.T[None] for v in prev]                                          # [1, n, B]
        params = [p.reshape(1, -1, 1) if p.numel() > 1 else p for p in params]
        tz = z.T[:, None, :]                                                          # [n_in, 1, B]
        grad = None if signal is None else z.new_empty(n, n_in)
        chunk = max(1, min(n_in, CHUNK_ELEMENTS // max(1, B * n)))
        for a in range(0, n_in, chunk):
            rows = slice(a, a + chunk)
            _, _, ts, tn = unit.synapse_step(values, current.T[None], params, [e[rows] for e in E], tz[rows])
            for e, t in zip(E, tn):
                e[rows].copy_(t)
            if grad is not None:
                grad[:, rows] = (ts * signal.T).sum(-1).T
        if grad is not None:
            accumulate(self.modules[self.synapse_of[i]].weight, grad)

    def _factorised_update(self, i: int, signal: torch.Tensor | None) -> None:
        """ẑ^g ← λ_g ẑ^g + z per group (B·n_in each); with a signal, ∂L/∂W += (L·ds/dI)ᵀ z + Σ_g (L·ts_g)ᵀ ẑ^g
        with ts_g = Σ_m ds/dv_m·c_m (the group's direction of the neuron's tangent step) and ẑ^g before the step."""
        unit, trace = self.units[i], self._trace[i]
        z = trace.pop("pending")[2]
        factor = trace["factor"]
        G = len(factor.groups)
        if "pre" not in trace:
            trace["pre"] = z.new_zeros(G, unit.batch, z.shape[1])
        pre = trace["pre"]
        if signal is not None:
            readout = trace["readout"]
            first = readout.shape[0] - G
            grad = (signal * readout[0]).T @ z
            for g in range(G):
                grad.addmm_((signal * readout[first + g]).T, pre[g])
            accumulate(self.modules[self.synapse_of[i]].weight, grad)
        for g, leak in enumerate(factor.values(unit)[0]):
            pre[g].mul_(leak).add_(z)

    def eligibility(self, i: int | None = None) -> list[torch.Tensor]:
        """The per-synapse traces ε of neuron layer ``i`` (the first by default): [B, n, n_in] per state (built
        from the presynaptic traces where the trace is factorised)."""
        i = min(self.units) if i is None else i
        self._flush()
        trace = self._trace[i]
        if trace.get("factor") is None:
            return [e.permute(2, 1, 0) for e in trace.get("synapse", [])]
        if "pre" not in trace:
            return []
        unit, pre = self.units[i], trace["pre"]
        out = [pre.new_zeros(unit.batch, unit.n, pre.shape[-1]) for _ in unit.states]
        for g, states in enumerate(trace["factor"].values(unit)[1]):
            for m, c in states:
                out[m] = c.reshape(1, -1, 1).expand(1, unit.n, 1) * pre[g][:, None, :]
        return out


OSTL = EProp


class OTTT(OnlineRule):
    """Online training through time: presynaptic traces â_t = λ â_{t-1} + z_t with the neuron's derived leak λ
    (∂F/∂v, constant and diagonal; reset ignored), ∂L/∂W = vjp of the synapse at â with ∂L/∂I of the same step.
    Works for any synapse linear in its input (nn.Linear, nn.Conv2d, ...). Memory: one trace per input."""

    name = "ottt"

    def __init__(self, model: nn.Module, trace_inputs: bool = True):
        """``trace_inputs=False``: the synapse fed by the model's input (before any neuron) takes the input
        itself, not its trace (SpikingJelly's ``OTTTSequential`` does so)."""
        super().__init__(model)
        self.trace_inputs = trace_inputs
        self._leaks = {i: _leak(unit.layer) for i, unit in self.units.items() if i in self.synapse_of}

    def _leak_value(self, i: int) -> float:
        expr, names, fn = self._leaks[i]
        unit = self.units[i]
        key = unit.versions()
        cached = self._leak_cache.get(i)
        if cached is not None and cached[0] == key:
            return cached[1]
        values = []
        for name in names:
            p = unit.layer.param_value(name)
            if p.numel() > 1:
                raise OnlineError("ND903", f"ottt: the leak {sp.sstr(expr)} of {type(unit.layer).__name__} depends "
                                           f"on '{name}', which has one value per neuron; OTTT's presynaptic trace "
                                           "needs one leak per layer: use a scalar, or 'eprop'")
            values.append(float(p.detach()))
        self._leak_cache[i] = (key, float(fn(*values)), [unit.param_tensor(n) for n in names])
        return self._leak_cache[i][1]

    def _synapse_step(self, i, module, h):
        neuron = i + 1
        lam = self._leak_value(neuron) if self.trace_inputs or i > min(self.units) else 0.0
        trace = self._trace[neuron]
        z = h.detach()
        pre = trace.get("pre")
        if pre is None or pre.shape != z.shape or pre.dtype != z.dtype:
            trace["pre"] = z.clone()
        elif lam == 0.0:
            pre.copy_(z)
        else:
            pre.mul_(lam).add_(z)                                     # in place: the trace is read within the step
        return super()._synapse_step(i, module, h)

    def _accumulate(self, i, signal):
        super()._accumulate(i, signal)
        j = self.synapse_of.get(i)
        if signal is None or j is None:
            return
        unit, module = self.units[i], self.modules[j]
        grad_current = (signal * self._trace[i]["readout"][0]).reshape(unit.batch, *unit.feature_shape)
        pre = self._trace[i]["pre"]
        grad_current = grad_current.to(pre.dtype)
        if type(module) is nn.Linear:                     # the vjp below, written out
            accumulate(module.weight, grad_current.T @ pre)
            if module.bias is not None:
                accumulate(module.bias, grad_current.sum(0))
            return
        params = dict(trainable(module))
        _, vjp = torch.func.vjp(lambda p: torch.func.functional_call(module, p, (pre,)),
                                {n: p.detach() for n, p in params.items()})
        for name, g in vjp(grad_current)[0].items():
            accumulate(params[name], g)


def _leak(layer: Neuron):
    """(λ, its parameters' names, λ as a function of their values) of the states the input enters (OnlineError
    ND903 without one)."""
    jac = jacobians(layer.spec, layer.kernel_options())
    name = type(layer).__name__
    if jac.leak_verdict != "constant-diagonal":
        raise OnlineError("ND903", f"ottt: {name} has no closed-form leak λ for the presynaptic trace: "
                                   f"{jac.explain()[0]}; use 'eprop'")
    receiving = [m for m in range(len(jac.states)) if any(e != 0 for e in jac.dF_dI.row(m))]
    leaks = {sp.simplify(jac.leak[m]) for m in receiving}
    if len(leaks) != 1:
        raise OnlineError("ND903", f"ottt: the input of {name} enters states with different leaks "
                                   f"({', '.join(sp.sstr(e) for e in leaks)}); one presynaptic trace cannot follow "
                                   "them: use 'eprop'")
    expr = leaks.pop()
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    return expr, [s.name[2:] for s in symbols], sp.lambdify(symbols, expr, "math")


class SLTT(OTTT):
    """Spatial learning through time: the same-step gradient only (no trace through time, neither for synapses
    nor neuron parameters)."""

    name = "sltt"
    temporal_params = False

    def __init__(self, model: nn.Module):
        OnlineRule.__init__(self, model)
        self._leaks = {}

    def _synapses(self):
        return {}          # every parameter gets autograd's same-step gradient

    def _synapse_step(self, i, module, h):
        return module(h)


class RTRL(OnlineRule):
    """Real-time recurrent learning: d(state)/dθ for every state and every trainable parameter, carried forward
    through the whole chain (forward-mode AD with one direction per parameter entry). Exact; memory and work
    grow with the number of parameters, so it is a test oracle for small models."""

    name = "rtrl"

    def _synapses(self):
        return {}

    def reset(self):
        super().reset()
        self._params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._offsets, total = {}, 0
        for n, p in self._params:
            self._offsets[id(p)] = total
            total += p.numel()
        self.directions = total

    def step(self, x):
        h, dh = x, None                                          # dh: [D, B, ...] tangents of h, None = zero
        for i, module in enumerate(self.modules):
            if i in self.units:
                h, dh = self._rtrl_neuron(i, h, dh)
            else:
                h, dh = self._rtrl_module(module, h, dh)
        self._out_tangent = dh
        out = h.detach().requires_grad_()
        self._out = out
        return out

    def _basis(self, p: torch.Tensor) -> torch.Tensor:
        """[D, *p.shape]: one-hot tangents of ``p`` in its own directions, zero elsewhere."""
        start = self._offsets[id(p)]
        basis = p.new_zeros(self.directions, p.numel())
        basis[start:start + p.numel()] = torch.eye(p.numel(), dtype=p.dtype, device=p.device)
        return basis.reshape(self.directions, *p.shape)

    def _rtrl_module(self, module, h, dh):
        params = dict(trainable(module))
        if not params and dh is None:
            return module(h).detach(), None
        h = h.detach()
        values = {n: p.detach() for n, p in params.items()}
        f = lambda x, p: torch.func.functional_call(module, p, (x,))  # noqa: E731
        dx = torch.zeros((self.directions, *h.shape), dtype=h.dtype, device=h.device) if dh is None else dh
        dp = {n: self._basis(p) for n, p in params.items()}
        tangent = torch.func.vmap(lambda t, tp: torch.func.jvp(f, (h, values), (t, tp))[1])(dx, dp)
        return f(h, values).detach(), tangent

    def _rtrl_neuron(self, i, current, dcurrent):
        unit = self.units[i]
        values = unit.values(current)
        trace = self._trace[i]
        D = self.directions
        if "state" not in trace:
            trace["state"] = [values.new_zeros(unit.batch, unit.n, D) for _ in unit.states]
            trace["tp"] = []
            for name in unit.learnable:
                flat = unit.flat_param(name)
                basis = self._basis(unit.param_tensor(name)).to(unit.cdt)   # [D, *shape of the parameter]
                if flat.numel() == 1:
                    trace["tp"].append(basis.reshape(1, 1, D))
                else:                                   # per neuron: the direction of each neuron's own entry
                    fs, shape = unit.feature_shape, tuple(basis.shape[1:])
                    basis = basis.reshape(D, *([1] * (len(fs) - len(shape))), *shape).expand(D, *fs)
                    trace["tp"].append(basis.reshape(D, unit.n).T[None])
                for m in unit.starts_at(name):                      # a state that starts at the parameter
                    trace["state"][m] = trace["state"][m] + trace["tp"][-1]
        tI = values.new_zeros(1, 1, D) if dcurrent is None else dcurrent.reshape(D, unit.batch, unit.n) \
            .permute(1, 2, 0).to(unit.cdt)
        prev = [v[..., None] for v in unit.states]
        spike, new, tspike, tnew = unit.tangent_step(prev, values[..., None], unit.params("bn"), trace["state"], tI,
                                                     trace["tp"])
        unit.states = [v[..., 0] for v in new]
        trace["state"] = tnew
        out = spike[..., 0].reshape(current.shape).to(current.dtype)
        tangent = tspike.permute(2, 0, 1).reshape(D, *current.shape).to(current.dtype)
        return out, tangent

    def backward(self, loss):
        if not loss.requires_grad:
            return
        (g,) = torch.autograd.grad(loss, self._out)
        if self._out_tangent is None:
            return
        flat = (self._out_tangent.reshape(self.directions, -1) @ g.reshape(-1).to(self._out_tangent.dtype))
        for n, p in self._params:
            start = self._offsets[id(p)]
            accumulate(p, flat[start:start + p.numel()].reshape(p.shape))


RULES = {"eprop": EProp, "ostl": EProp, "ottt": OTTT, "sltt": SLTT, "rtrl": RTRL}

