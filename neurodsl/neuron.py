"""``nd.Neuron``: the DSL base class and the ``nn.Module`` users get.

Subclassing captures the spec (``cls.spec``) at class creation, so invalid equations
fail there. Instances hold parameters (fp32 ``nn.Parameter`` or buffers), carry states
between calls until :meth:`Neuron.reset_state`, and run the generated kernels.

>>> import torch, neurodsl as nd
>>> class LIFLike(nd.Neuron):
...     v = nd.State(0.0)
...     tau = nd.Param(2.0)
...     def charge(self, x): return dict(v=self.v + (x - self.v) / self.tau)
...     def fire(self): return self.v - 1.0
...     def reset(self, s): return dict(v=self.v * (1 - s))
>>> layer = LIFLike(tau=torch.full((4,), 2.0), learnable=("tau",))
>>> layer(torch.ones(3, 2, 4) * 1.5).shape
torch.Size([3, 2, 4])
"""
from __future__ import annotations

import copy
import itertools
import math
import warnings

import torch
from torch import nn

from kernels_gen.ops import compute_dtype, neuron_op, register, registered
from kernels_gen.parallel import register as register_solver, registered as registered_solver

from . import surrogate as sg
from .analysis import KernelOptions, analyse, classify_as_written
from .analysis.derive import ALPHA
from .compiler import compile_parallel, compile_spec
from .errors import InputError, Problem, SpecError
from .spec import Param, State, capture

_RESERVED = {"spec", "variants", "surrogate", "surrogate_alpha", "detach_reset", "step_mode", "backend",
             "store_state_seqs", "smooth", "charge", "fire", "reset", "analysis", "state_seqs"}


def _constant_under_compile(fn):
    """``torch.compiler.assume_constant_result`` without its import of ``torch._dynamo`` (and triton, ~2 s)
    when neurodsl is imported: that decorator only sets this flag (tests/test_compile.py checks it)."""
    fn._dynamo_marked_constant = True
    return fn


class _StateSequence:
    """``layer.v_seq``: state ``v`` at every step of the last call, [T, *shape], when ``store_state_seqs``
    is set (SpikingJelly's ``store_v_seq``); None otherwise."""

    def __init__(self, state: str):
        self.state = state

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance.__dict__.get("state_seqs", {}).get(self.state)


class _hybridmethod:
    """A method callable on the class (defaults) and on an instance (its settings)."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, instance, owner):
        return self.fn.__get__(instance if instance is not None else owner, owner)


class Neuron(nn.Module):
    """Base class of every neuron; see the DSL guide (docs/dsl.md).

    Class attributes: ``nd.State`` / ``nd.Param`` declarations, ``variants`` (equation-changing
    options: name -> allowed values, the first is the default), and the methods ``charge``,
    ``fire`` and optional ``reset``.
    """

    variants: dict = {}

    # -- class creation: capture and validate -----------------------------
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        states, params = {}, {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, State):
                    states[name] = value
                    params.pop(name, None)
                elif isinstance(value, Param):
                    params[name] = value
                    states.pop(name, None)
        cls._states_decl, cls._params_decl = states, params
        for name in states:  # SpikingJelly's v_seq, for every state: layer.<state>_seq
            if not hasattr(cls, f"{name}_seq") and f"{name}_seq" not in params:
                setattr(cls, f"{name}_seq", _StateSequence(name))
        cls._variant_memo = {}
        equations = dict(getattr(cls, "_equations", {}))
        for method in ("charge", "fire", "reset"):
            if method in vars(cls):
                equations[method] = vars(cls)[method]
        if "reset" in vars(cls):
            cls.reset = Neuron.reset  # the module keeps SpikingJelly's reset(); the equation lives in _equations
        cls._equations = equations
        clashes = [n for n in list(states) + list(params) if n in _RESERVED or hasattr(nn.Module, n)
                   or n in vars(Neuron)]
        if clashes:
            raise SpecError([Problem("ND103", cls.__name__, "", n, f"name '{n}' clashes with a Neuron/nn.Module "
                                     "attribute") for n in clashes])
        if "charge" not in equations:
            return  # an abstract base without equations
        for combo in itertools.islice(itertools.product(*cls.variants.values()), 16):
            cls.variant_spec(**dict(zip(cls.variants, combo)))
        cls.spec = cls.variant_spec()

    _equations: dict = {}

    @classmethod
    def variant_spec(cls, **options):
        """The spec for these ``variants`` values (memoised); defaults for the rest."""
        chosen = {name: values[0] for name, values in cls.variants.items()}
        for name, value in options.items():
            if name not in cls.variants or value not in cls.variants[name]:
                allowed = cls.variants.get(name, "no such option")
                raise SpecError([Problem("ND110", cls.__name__, "", name, f"option {name}={value!r} not in {allowed}")])
            chosen[name] = value
        key = tuple(sorted(chosen.items()))
        if key not in cls._variant_memo:
            cls._variant_memo[key] = capture(cls, cls._equations, cls._states_decl, cls._params_decl, chosen)
        return cls._variant_memo[key]

    @classmethod
    def without_reset(cls):
        """This neuron with ``reset`` removed (paper 003's premise), as a new class (memoised).

        Every spike-driven update goes with it (e.g. ALIF's ``a += s``); the analysis report lists them.
        """
        if "_without_reset" not in vars(cls):
            namespace = {name: copy.copy(decl) for name, decl in {**cls._states_decl, **cls._params_decl}.items()}
            namespace.update(variants=dict(cls.variants), charge=cls._equations["charge"],
                             fire=cls._equations["fire"], __module__=cls.__module__, _reset_free_of=cls,
                             __doc__=f"{cls.__name__} without its reset.")
            cls._without_reset = type(f"{cls.__name__}WithoutReset", (Neuron,), namespace)
        return cls._without_reset

    @_hybridmethod
    def analysis(self_or_cls, **options):
        """The analysis report (printable) for the class defaults or this instance's settings."""
        if isinstance(self_or_cls, Neuron):
            return analyse(self_or_cls.spec, self_or_cls.kernel_options())
        spec = self_or_cls.variant_spec(**options)
        return analyse(spec, KernelOptions(sg.ATan(), vector_params=(False,) * len(spec.params)))

    # -- instances ----------------------------------------------------------
    def __init__(self, *, surrogate: sg.Surrogate | None = None, detach_reset: bool = False, step_mode: str = "m",
                 backend: str = "auto", learnable=None, store_state_seqs: bool = False, smooth: bool = False,
                 parallel: str = "auto", max_iterations: int | None = None, **kwargs):
        super().__init__()
        cls = type(self)
        if "charge" not in cls._equations:
            raise SpecError([Problem("ND109", cls.__name__, "charge", "", "abstract neuron: define charge/fire")])
        unknown = [k for k in kwargs if k not in cls.variants and k not in cls._params_decl]
        if unknown:
            raise SpecError([Problem("ND121", cls.__name__, "__init__", k, f"unknown argument '{k}'")
                             for k in unknown])
        self.spec = cls.variant_spec(**{k: v for k, v in kwargs.items() if k in cls.variants})
        if step_mode not in ("m", "s") or backend not in ("auto", "torch", "triton"):
            raise SpecError([Problem("ND124", cls.__name__, "__init__", "", f"step_mode={step_mode!r}, "
                                     f"backend={backend!r}")])
        _check_parallel(cls.__name__, self.spec, parallel, smooth)
        self._verdict = classify_as_written(self.spec)
        self.parallel, self.max_iterations, self.last_form = parallel, max_iterations, {}
        self.detach_reset, self.step_mode = detach_reset, step_mode
        self.backend, self.store_state_seqs, self.smooth = backend, store_state_seqs, smooth
        names = set(self.spec.params)
        if learnable is not None:
            bad = [n for n in learnable if n not in names]
            if bad:
                raise SpecError([Problem("ND122", cls.__name__, "__init__", n, f"'{n}' is not a parameter")
                                 for n in bad])
        for name in self.spec.params:
            value = kwargs.get(name, cls._params_decl[name].default)
            tensor = _param_tensor(cls.__name__, name, value)
            learn = name in learnable if learnable is not None else cls._params_decl[name].learnable
            if learn:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
        self.surrogate = sg.ATan() if surrogate is None else surrogate
        self._carried: dict[str, torch.Tensor] = {}
        self.state_seqs: dict[str, torch.Tensor] = {}
        self._last_options: KernelOptions | None = None

    @property
    def surrogate(self) -> sg.Surrogate:
        """The surrogate gradient. Assigning one also resets ``surrogate_alpha`` to the new surrogate's alpha
        (an ``nn.Parameter`` when it is learnable: rebuild the optimizer then)."""
        return self.__dict__["_surrogate"]

    @surrogate.setter
    def surrogate(self, value: sg.Surrogate) -> None:
        name = type(self).__name__
        if not isinstance(value, sg.Surrogate):
            raise SpecError([Problem("ND132", name, "surrogate", "surrogate", f"{value!r} is no surrogate")])
        if self.smooth and not value.has_primitive:
            raise SpecError([Problem("ND131", name, "surrogate", "smooth", "smooth mode needs a primitive")])
        old = self._parameters.pop("surrogate_alpha", None)
        old = self._buffers.pop("surrogate_alpha", old)
        alpha = torch.tensor(value.alpha, dtype=torch.float32, device=None if old is None else old.device)
        if value.learnable:
            self.register_parameter("surrogate_alpha", nn.Parameter(alpha))
        else:
            self.register_buffer("surrogate_alpha", alpha)
        self.__dict__["_surrogate"] = value

    # -- copying and pickling -------------------------------------------------
    def __getstate__(self):
        """Carried states and sequences without their autograd history, so deepcopy and pickle work mid-training."""
        state = dict(self.__dict__)
        for key in ("_carried", "state_seqs"):
            state[key] = {k: v.detach() for k, v in state.get(key, {}).items()}
        return state

    def __reduce_ex__(self, protocol):
        base = type(self).__dict__.get("_reset_free_of")
        if base is None:
            return super().__reduce_ex__(protocol)
        return _new_without_reset, (base,), self.__getstate__()  # the generated class is rebuilt, not looked up

    def param_value(self, name):
        if name in self._parameters:
            return self._parameters[name]
        if name in self._buffers:
            return self._buffers[name]
        raise AttributeError(name)

    def state_value(self, name):
        """The carried state tensor (None after a reset)."""
        return self.__dict__.get("_carried", {}).get(name)

    def extra_repr(self) -> str:
        params = ", ".join(f"{n}={_short(self.param_value(n))}" for n in self.spec.params)
        opts = ", ".join(f"{k}={v!r}" for k, v in self.spec.options)
        return ", ".join(x for x in [params, opts, f"surrogate={self.surrogate!r}", f"step_mode={self.step_mode!r}",
                                     f"backend={self.backend!r}", f"parallel={self.parallel!r}",
                                     "detach_reset=True" if self.detach_reset else ""] if x)

    # -- state handling (SpikingJelly-compatible) ---------------------------
    def reset_state(self) -> None:
        """Forget carried states; the next call starts from the State defaults."""
        self._carried = {}
        self.state_seqs = {}

    def reset(self) -> None:
        """Same as :meth:`reset_state` (so ``spikingjelly.activation_based.functional.reset_net`` works)."""
        self.reset_state()

    def detach_state(self) -> None:
        """Cut the autograd history of carried states (truncated BPTT)."""
        self._carried = {k: v.detach() for k, v in self._carried.items()}

    # -- running --------------------------------------------------------------
    def kernel_options(self, vector_params=None, dtype: torch.dtype = torch.float32) -> KernelOptions:
        learnable = tuple(n for n in self.spec.params if self.param_value(n).requires_grad)
        if self.surrogate_alpha.requires_grad:
            learnable += (ALPHA,)
        if vector_params is None:
            vector_params = tuple(self.param_value(n).numel() > 1 for n in self.spec.params)
        return KernelOptions(self.surrogate, self.detach_reset, tuple(vector_params), learnable,
                             "float64" if dtype == torch.float64 else "float32", self.smooth)

    def resolve_backend(self, device: torch.device) -> str:
        if self.backend != "auto":
            return self.backend
        return "triton" if device.type == "cuda" else "torch"

    def kernel_source(self, kind: str = "forward", backend: str | None = None) -> str:
        """The generated source this module runs: ``kind`` is 'forward', 'backward' or 'all'."""
        options = self._last_options or self.kernel_options()
        backend = backend or (self.backend if self.backend != "auto" else "triton")
        text = compile_spec(self.spec, options).cached_source(backend)
        return section(text, kind)

    def forward(self, *inputs, state: dict | None = None):
        xs = _check_inputs(self, inputs)
        single = self.step_mode == "s"
        if single:
            xs = [x.unsqueeze(0) for x in xs]
        if xs[0].dim() < 1 or (not single and inputs[0].dim() < 1):
            raise InputError("ND401", f"{type(self).__name__}: expected [T, *shape], got {tuple(inputs[0].shape)}")
        T, shape = xs[0].shape[0], tuple(xs[0].shape[1:])
        if T == 0:
            raise InputError("ND404", f"{type(self).__name__}: the time dimension is 0")
        n = math.prod(shape)
        params = [self.flat_param(name, shape, xs[0].device) for name in self.spec.params]
        flat_params = [p for p, _ in params] + [self.surrogate_alpha.reshape(1)]
        vector = tuple(vec for _, vec in params)
        init = [self.initial_state(s, d, shape, n, state, xs[0]) for s, d in zip(self.spec.states,
                                                                                 self.spec.state_defaults)]
        flat_xs = [x.reshape(T, n) for x in xs]
        if torch.compiler.is_compiling():  # torch.compile traces tensors only; kernels are chosen Python-side
            grads = tuple(p.requires_grad for p in flat_params)
            key, backend, solver_key, uniform = self._kernel_for_trace(
                vector, str(xs[0].dtype), xs[0].device.type, grads, id(self.surrogate), self.detach_reset,
                self.smooth, self.backend, self.parallel)
            solver = registered_solver(solver_key) if solver_key else None
        else:
            options = self.kernel_options(vector, xs[0].dtype)
            self._last_options = options
            key, backend = register(compile_spec(self.spec, options)), self.resolve_backend(xs[0].device)
            solver = uniform = None
            if self.parallel != "sequential" and (self.parallel != "auto" or self.choose_form(T) != "sequential"):
                solver, uniform = self._parallel_solver(options)
        result = None if solver is None else self._run_parallel(T, key, backend, solver, uniform, flat_xs, init,
                                                                flat_params)
        if result is None:
            self.last_form = self.last_form if self.last_form.get("fallback") else {"form": "sequential"}
            result = neuron_op(key, backend, flat_xs, init, flat_params, self.store_state_seqs)
        spikes, states = result
        if self.store_state_seqs:
            self.state_seqs = {s: v.reshape(T, *shape) for s, v in zip(self.spec.states, states)}
            states = [v[-1] for v in states]
        self._carried = {s: v.reshape(shape) for s, v in zip(self.spec.states, states)}
        spikes = spikes.reshape(T, *shape)
        return spikes[0] if single else spikes

    @_constant_under_compile
    def _kernel_for_trace(self, vector, dtype_name, device_type, *guards):
        """(kernel key, backend, parallel solver key or None, uniform A) while torch.compile traces :meth:`forward`.

        Dynamo calls this once per trace and bakes the result into the graph as a constant, so the
        analysis and code generation behind it are never traced; ``guards`` (requires_grad flags, the
        surrogate's identity, detach_reset, smooth, backend, parallel) are arguments so that changing
        them retraces. Reset-free neurons get their parallel solver (traced into the graph); the exact
        mode of neurons with reset iterates to a data-dependent fixed point, so they run sequentially.
        """
        dtype = getattr(torch, dtype_name.removeprefix("torch."))
        self._last_options = options = self.kernel_options(vector, dtype)
        backend = self.resolve_backend(torch.device(device_type))
        compiled = compile_spec(self.spec, options)
        compiled.meta(backend)  # generate now, not inside the fake op
        if self.parallel == "sequential" or self._verdict.spike_driven or not self._verdict.exact:
            return register(compiled), backend, None, None
        solver, uniform = self._parallel_solver(options)
        self._check_matmul(uniform)  # here: an exception raised in traced code would stop Dynamo, not the user
        return register(compiled), backend, register_solver(solver), uniform

    def _check_matmul(self, uniform: bool) -> None:
        if self.parallel == "matmul" and not uniform:
            raise InputError("ND409", f"{type(self).__name__}: parallel='matmul' needs one matrix A for every step "
                                      "and neuron, but A has a per-neuron parameter or depends on the input; use "
                                      "parallel='scan'")

    def _parallel_solver(self, options):
        """The generated parallel forms for ``options``, and whether A is one matrix for all steps and neurons."""
        solver = compile_parallel(self.spec, options)
        return solver, solver.uniform(dict(zip(self.spec.params, options.vector_params)))

    def choose_form(self, T: int, n: int = 1, uniform: bool = True) -> str:
        """'sequential', 'scan' or 'matmul' for T steps of n neurons (``uniform``: one A for all).

        Rule for ``parallel='auto'`` (measured on CPU, docs/parallel.md): reset-free linear neurons go
        parallel from T >= AUTO_MIN_T when there are few neurons -- scan for n <= AUTO_SCAN_MAX_N, matmul
        while A is uniform, T <= MATMUL_MAX_T and n <= AUTO_MATMUL_MAX_N; otherwise the fused sequential
        kernel, which already saturates memory bandwidth with many neurons. Neurons with a spike-driven
        update stay sequential unless a parallel form is asked for (exact mode).
        """
        if self.parallel != "auto":
            return self.parallel
        verdict = self._verdict
        if verdict.spike_driven or not verdict.exact or T < AUTO_MIN_T:
            return "sequential"
        if uniform and T <= MATMUL_MAX_T and n <= AUTO_MATMUL_MAX_N:
            return "matmul"
        return "scan" if n <= AUTO_SCAN_MAX_N else "sequential"

    def _run_parallel(self, T, key, backend, solver, uniform, xs, init, params):
        """Spikes and states from a parallel form, or None to run the sequential kernels."""
        form = self.choose_form(T, xs[0].shape[1], uniform)
        if form == "sequential":
            return None
        cdt = compute_dtype(xs[0].dtype)
        cx, cinit, cparams = ([t.to(cdt) for t in group] for group in (xs, init, params))
        if not self._verdict.spike_driven:
            self._check_matmul(uniform)
            spikes, seqs, used = solver.solve(form, cx, cinit, cparams, backend=backend)
            self.last_form = {"form": used}
            states = seqs if self.store_state_seqs else [v[-1] for v in seqs]
            return spikes.to(xs[0].dtype), tuple(states)
        if xs[0].device.type == "meta":  # the fixed point's pass count depends on values a meta tensor lacks
            return None
        found = solver.solve_exact(form, cx, cinit, cparams, self.max_iterations or T + 1, backend)
        if found is None:
            warnings.warn(f"{type(self).__name__}: exact parallel mode did not converge in {self.max_iterations} "
                          "passes; running the sequential kernel", RuntimeWarning, stacklevel=3)
            self.last_form = {"form": "sequential", "fallback": True}
            return None
        spikes, charged, states, passes = found
        saved = [charged[self.spec.states.index(s)] for s in registered(key).meta(backend)["saved_states"]]
        states = states if self.store_state_seqs else [v[-1] for v in states]
        self.last_form = {"form": f"exact-{form}", "passes": passes}
        return neuron_op(key, backend, xs, init, params, self.store_state_seqs,
                         precomputed=(spikes.to(xs[0].dtype), [v.contiguous() for v in states],
                                      [h.contiguous() for h in saved]))

    def flat_param(self, name, shape, device):
        """Parameter ``name`` for ``prod(shape)`` neurons: ``([1] tensor, False)`` or ``([N] tensor, True)``."""
        p = self.param_value(name)
        if p.device != device:
            raise InputError("ND406", f"{type(self).__name__}: parameter '{name}' is on {p.device}, input on {device}")
        if p.numel() == 1:
            return p.reshape(1), False
        try:
            ok = torch.broadcast_shapes(p.shape, shape) == torch.Size(shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise InputError("ND407", f"{type(self).__name__}: parameter '{name}' of shape {tuple(p.shape)} does not "
                                      f"broadcast against the per-step shape {shape}")
        return p.expand(shape).reshape(-1), True

    def initial_state(self, name, default, shape, n, given, like):
        """State ``name``'s [n] start: from ``given`` (the ``state=`` argument), the carried state, or its default."""
        if given and name in given:
            value = torch.as_tensor(given[name], device=like.device)
            return value.expand(shape).reshape(n) if value.numel() > 1 else value.reshape(1).expand(n)
        if name in self._carried:
            carried = self._carried[name]
            if carried.numel() != n:
                raise InputError("ND408", f"{type(self).__name__}: carried state '{name}' has shape "
                                          f"{tuple(carried.shape)}, input per step {shape}; call reset_state()")
            return carried.reshape(n)
        if isinstance(default, str):
            flat, vec = self.flat_param(default, shape, like.device)
            return flat if vec else flat.expand(n)
        return torch.full((n,), float(default), device=like.device)


def _new_without_reset(base):
    """An empty instance of ``base.without_reset()`` for unpickling (its state is set afterwards)."""
    cls = base.without_reset()
    return cls.__new__(cls)


#: parallel='auto' thresholds, from CPU measurements of reset-free LIF fwd+bwd (docs/parallel.md).
AUTO_MIN_T = 32
AUTO_SCAN_MAX_N = 1024
AUTO_MATMUL_MAX_N = 4096
MATMUL_MAX_T = 128


def _check_parallel(cls_name, spec, parallel, smooth):
    if parallel not in ("auto", "sequential", "scan", "matmul"):
        raise SpecError([Problem("ND124", cls_name, "__init__", "parallel", f"parallel={parallel!r}: use 'auto', "
                                 "'sequential', 'scan' or 'matmul'")])
    if parallel in ("scan", "matmul"):
        verdict = classify_as_written(spec)
        if not verdict.exact:
            raise SpecError([Problem("ND141", cls_name, "__init__", "parallel", f"parallel={parallel!r} is not "
                                     f"possible: {verdict.reason}")])
        if smooth and verdict.spike_driven:
            raise SpecError([Problem("ND141", cls_name, "__init__", "parallel", "the exact parallel mode needs the "
                                     "Heaviside spike (smooth=False)")])


def section(text: str, kind: str) -> str:
    """Header plus the 'forward' or 'backward' part of a generated module ('all' returns it whole)."""
    if kind == "all":
        return text
    head, _, rest = text.partition("# ---- forward ----")
    forward, _, backward = rest.partition("# ---- backward ----")
    if kind == "forward":
        return head + "# ---- forward ----" + forward
    if kind == "backward":
        return head + "# ---- backward ----" + backward
    raise ValueError("kind must be 'forward', 'backward' or 'all'")


def _short(t: torch.Tensor) -> str:
    return f"{t.item():g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"


def _param_tensor(cls_name, name, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise SpecError([Problem("ND123", cls_name, "__init__", name, f"'{name}' must be a floating tensor")])
        return value.detach().clone().to(torch.float32 if value.dtype != torch.float64 else value.dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError([Problem("ND123", cls_name, "__init__", name, f"'{name}' must be a number or tensor")])
    return torch.tensor(float(value), dtype=torch.float32)


def _check_inputs(layer, inputs):
    name = type(layer).__name__
    if len(inputs) != len(layer.spec.inputs):
        raise InputError("ND402", f"{name} takes {len(layer.spec.inputs)} input(s) "
                                  f"({', '.join(layer.spec.inputs)}), got {len(inputs)}")
    for x in inputs:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError("ND405", f"{name}: inputs must be floating tensors, got "
                                      f"{getattr(x, 'dtype', type(x).__name__)}")
    first = inputs[0]
    for x in inputs[1:]:
        if x.shape != first.shape or x.device != first.device or x.dtype != first.dtype:
            raise InputError("ND403", f"{name}: inputs differ in shape/device/dtype")
    return list(inputs)
