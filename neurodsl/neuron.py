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
import numbers
import warnings

import torch
from torch import nn

from . import dispatch, layer_io
from . import surrogate as sg
from .analysis import KernelOptions, analyse, classify_as_written
from .analysis.derive import ALPHA
from .compiler import compile_spec
from .errors import InputError, Problem, SpecError
from .spec import Param, State, capture, check_class_variants

#: Attributes every instance sets (tests/test_shapes_modes.py checks the list against a real instance); with
#: the class's and nn.Module's attributes they are the names a state or parameter may not take.
INSTANCE_ATTRIBUTES = frozenset({
    "spec", "verdict", "parallel", "max_iterations", "last_form", "last_route", "detach_reset", "step_mode",
    "backend", "store_state_seqs", "smooth", "surrogate", "surrogate_alpha", "state_seqs", "_carried", "_routes",
    "_surrogate"})


#: Instance attributes that never hold a tensor, parameter or module (dicts and plain objects).
_PLAIN_ATTRIBUTES = frozenset({"last_form", "last_route", "_carried", "_routes", "state_seqs"})


def reserved_names() -> frozenset[str]:
    """Names a state or parameter may not take: what a Neuron instance, the class or nn.Module already use."""
    return INSTANCE_ATTRIBUTES | set(dir(nn.Module)) | set(vars(Neuron))


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
    #: Constructor arguments that make every term of the equations matter in checks against the reference
    #: loop (neurodsl.testing, ``neurodsl check``): e.g. Izhikevich's a, b, whose default 0 hides W's terms.
    check_kwargs: dict = {}

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
        reserved = reserved_names()
        clashes = [n for n in list(states) + list(params) if n in reserved]
        if clashes:
            raise SpecError([Problem("ND103", cls.__name__, "", n, f"name '{n}' clashes with a Neuron/nn.Module "
                                     "attribute") for n in clashes])
        if "charge" not in equations:
            return  # an abstract base without equations
        check_class_variants(cls)  # before a variant is selected (that hashes its values)
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
        if step_mode not in ("m", "s") or (backend != "auto" and backend not in dispatch.backend_names()):
            raise SpecError([Problem("ND124", cls.__name__, "__init__", "", f"step_mode={step_mode!r}, "
                                     f"backend={backend!r}: step_mode is 'm' or 's'; backend is 'auto' or one of "
                                     f"{', '.join(dispatch.backend_names())}")])
        if max_iterations is not None and (isinstance(max_iterations, bool) or not isinstance(max_iterations, int)
                                           or max_iterations < 1):
            raise SpecError([Problem("ND124", cls.__name__, "__init__", "max_iterations",
                                     f"max_iterations={max_iterations!r}: a positive int (or None: T + 1)")])
        _check_parallel(cls.__name__, self.spec, parallel, smooth)
        self.verdict = classify_as_written(self.spec)
        self.parallel, self.max_iterations, self.last_form, self.last_route = parallel, max_iterations, {}, None
        self.detach_reset, self.step_mode = detach_reset, step_mode
        self.backend, self.store_state_seqs, self.smooth = backend, store_state_seqs, smooth
        listed = _learnable_names(cls.__name__, self.spec.params, learnable)
        for name in self.spec.params:
            value = kwargs.get(name, cls._params_decl[name].default)
            learn = name in listed if learnable is not None else cls._params_decl[name].learnable
            tensor = _param_tensor(cls.__name__, name, value, learn)
            if learn:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
        self.surrogate = sg.ATan() if surrogate is None else surrogate
        self._carried: dict[str, torch.Tensor] = {}
        self._routes: dict[tuple, dispatch.Route] = {}
        self.state_seqs: dict[str, torch.Tensor] = {}

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
        if self.smooth and not value.is_step():
            raise SpecError([Problem("ND131", name, "surrogate", "smooth", f"smooth mode emits the surrogate's "
                                     f"primitive as the spike, which must rise from 0 to 1; {value!r} has "
                                     f"{'no primitive' if not value.has_primitive else 'one that does not'}")])
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
        state["_routes"], state["last_route"] = {}, None  # kernel keys are registered per process
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

    def __setattr__(self, name, value):
        if name in _PLAIN_ATTRIBUTES:  # set on every call: skip nn.Module's checks for tensors and modules
            object.__setattr__(self, name, value)
        elif name in type(self)._states_decl:
            self.set_state(name, value)  # ``layer.v = tensor`` (SpikingJelly's habit) sets the carried state
        else:
            super().__setattr__(name, value)

    def state_value(self, name):
        """The carried state tensor (None after a reset)."""
        return self.__dict__.get("_carried", {}).get(name)

    def set_state(self, name: str, value) -> None:
        """Set the carried state ``name`` (what ``layer.<state> = value`` does): a number (every neuron) or a
        floating tensor of the per-step shape; the next call starts from it (a shape mismatch raises ND408 there).
        """
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = torch.tensor(float(value), dtype=torch.float32, device=self.surrogate_alpha.device)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise InputError("ND410", f"{type(self).__name__}.{name} = ...: a number or a floating tensor, got "
                                      f"{getattr(value, 'dtype', type(value).__name__)}; or call reset_state()")
        self._carried[name] = value

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
        learnable = tuple(n for n in self.spec.params if dispatch.differentiable(self.param_value(n)))
        if dispatch.differentiable(self.surrogate_alpha):
            learnable += (ALPHA,)
        if vector_params is None:
            vector_params = tuple(self.param_value(n).numel() > 1 for n in self.spec.params)
        return KernelOptions(self.surrogate, self.detach_reset, tuple(vector_params), learnable,
                             "float64" if dtype == torch.float64 else "float32", self.smooth)

    @property
    def _last_options(self) -> KernelOptions | None:
        """The kernel options of the last call (None before the first)."""
        return None if self.last_route is None else self.last_route.kernels.options

    def resolve_backend(self, device: torch.device) -> str:
        """The backend a call with tensors on ``device`` runs (``backend='auto'``: decided per device)."""
        return dispatch.resolve_backend(self.backend, torch.device(device))

    def choose_form(self, T: int, n: int = 1, uniform: bool = True, device: str = "cpu") -> str:
        """'sequential', 'scan' or 'matmul' for T steps of n neurons on ``device`` (``uniform``: one A for all);
        see :func:`neurodsl.dispatch.auto_form` for the ``parallel='auto'`` rule."""
        if self.parallel != "auto":
            return self.parallel
        if self.verdict.spike_driven or not self.verdict.exact:
            return "sequential"
        return dispatch.auto_form(T, n, uniform, device, self.resolve_backend(device), len(self.spec.states))

    def kernel_source(self, kind: str = "forward", backend: str | None = None) -> str:
        """The generated source this module runs: ``kind`` is 'forward', 'backward' or 'all'.

        ``backend``: by default the one the last call ran, or before any call the one a call on the
        parameters' device would run.
        """
        if backend is None:
            backend = (self.last_route.kernels.backend if self.last_route is not None
                       else self.resolve_backend(self.surrogate_alpha.device))
        options = self._last_options or self.kernel_options()
        text = compile_spec(self.spec, options).cached_source(backend)
        return section(text, kind)

    def forward(self, *inputs, state: dict | None = None):
        call = layer_io.prepare(self, inputs, state)
        route = self.route(call)
        spikes, states = dispatch.run(self, route, call.inputs, call.init, call.params, self.store_state_seqs)
        flat = len(call.shape) == 1  # [T, N] in, [T, N] out: nothing to reshape
        if self.store_state_seqs:
            self.state_seqs = {s: v if flat else v.reshape(call.T, *call.shape) for s, v in zip(self.spec.states,
                                                                                                  states)}
            states = [v[-1] for v in states]
        self._carried = {s: v if flat else v.reshape(call.shape) for s, v in zip(self.spec.states, states)}
        if not flat:
            spikes = spikes.reshape(call.T, *call.shape)
        return spikes[0] if call.single else spikes

    def route(self, call: layer_io.Call) -> dispatch.Route:
        """The dispatcher's decision for ``call``, made once per (options, dtype, device, shape) and reused."""
        grads = tuple(map(dispatch.differentiable, call.params))
        if torch.compiler.is_compiling():  # torch.compile traces tensors only; kernels are chosen Python-side
            kernels = self._kernels_for_trace(call.vector, str(call.dtype), call.device.type, grads,
                                              id(self.surrogate), self.detach_reset, self.smooth, self.backend,
                                              self.parallel)
            route = dispatch.Route(kernels, dispatch.form_for(self, kernels, call.T, call.n))
        else:
            key = (call.dtype, call.device.type, call.T, call.n, call.vector, grads, id(self.surrogate),
                   self.detach_reset, self.smooth, self.backend, self.parallel)
            route = self._routes.get(key)
            if route is None:
                kernels = dispatch.kernels_for(self, call.vector, call.dtype, call.device)
                route = self._routes[key] = dispatch.Route(kernels, dispatch.form_for(self, kernels, call.T, call.n))
        self.last_route = route
        return route

    @_constant_under_compile
    def _kernels_for_trace(self, vector, dtype_name, device_type, *guards) -> dispatch.Kernels:
        """:func:`neurodsl.dispatch.kernels_for` while torch.compile traces :meth:`forward`.

        Dynamo calls this once per trace and bakes the result into the graph as a constant, so the
        analysis and code generation behind it are never traced; ``guards`` (requires_grad flags, the
        surrogate's identity, detach_reset, smooth, backend, parallel) are arguments so that changing
        them retraces. Reset-free neurons keep their parallel solver (traced into the graph); the exact
        mode of neurons with reset iterates to a data-dependent fixed point, so they run sequentially.
        """
        dtype = getattr(torch, dtype_name.removeprefix("torch."))
        return dispatch.kernels_for(self, vector, dtype, torch.device(device_type), compiling=True)

    def flat_param(self, name, shape, device):
        """Parameter ``name`` for ``prod(shape)`` neurons: ``([1] tensor, False)`` or ``([N] tensor, True)``."""
        return layer_io.flat_param(self, name, shape, device)


def _new_without_reset(base):
    """An empty instance of ``base.without_reset()`` for unpickling (its state is set afterwards)."""
    cls = base.without_reset()
    return cls.__new__(cls)


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
        return head + "# ---- forward ----" + forward.rstrip() + "\n"
    if kind == "backward":
        return head + "# ---- backward ----" + backward
    raise ValueError("kind must be 'forward', 'backward' or 'all'")


def _short(t: torch.Tensor) -> str:
    return f"{t.item():g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"


def _learnable_names(cls_name, params, learnable) -> tuple[str, ...]:
    """``learnable`` as parameter names: a name, or an iterable of names (ND122 for anything else)."""
    if learnable is None:
        return ()
    if isinstance(learnable, str):
        learnable = (learnable,)
    if isinstance(learnable, bool) or not hasattr(learnable, "__iter__"):
        raise SpecError([Problem("ND122", cls_name, "__init__", "learnable", f"learnable={learnable!r}: pass "
                                 f"parameter names, e.g. learnable=('{params[0] if params else 'tau'}',), or "
                                 f"learnable={cls_name}.spec.params for all")])
    names = tuple(learnable)
    bad = [n for n in names if n not in params]
    if bad:
        raise SpecError([Problem("ND122", cls_name, "__init__", str(n), f"'{n}' is not a parameter") for n in bad])
    return names


def _param_tensor(cls_name, name, value, learn: bool) -> torch.Tensor:
    """A parameter's value as a float32 (or float64) tensor of its own (ND123 for anything else)."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise SpecError([Problem("ND123", cls_name, "__init__", name, f"'{name}' must be a floating tensor")])
        if value.requires_grad and not learn:
            warnings.warn(f"{cls_name}: '{name}' requires grad but is not in learnable=; the layer keeps a copy that "
                          f"is not trained (list it in learnable= to train it)", UserWarning, stacklevel=4)
        return value.detach().clone().to(torch.float32 if value.dtype != torch.float64 else value.dtype)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError([Problem("ND123", cls_name, "__init__", name, f"'{name}' must be a number or tensor, got "
                                 f"{type(value).__name__}")])
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if number != number or number in (float("inf"), float("-inf")) or abs(number) > 3.4e38:
        raise SpecError([Problem("ND123", cls_name, "__init__", name, f"'{name}' = {value!r} is not a finite "
                                 "float32 number")])
    return torch.tensor(number, dtype=torch.float32)
