"""neurodsl's errors: one hierarchy (rooted in ``kernels_gen.errors``) with stable codes.

:data:`CATALOGUE` maps every code to what triggers it and how to fix it; the docs'
error catalogue is generated from it and a test triggers each code.

>>> from neurodsl.errors import SpecError, Problem
>>> err = SpecError([Problem("ND101", "LIF", "charge", "tua", "unknown symbol 'self.tua'")])
>>> err.code, err.codes
('ND101', ('ND101',))
"""
from __future__ import annotations

from dataclasses import dataclass

from kernels_gen.errors import (BackendError, CacheError, CodegenError, InputError, NeuroDSLError,
                                SpecError as _BaseSpecError)

__all__ = ["NeuroDSLError", "SpecError", "Problem", "CodegenError", "BackendError", "InputError", "CacheError",
           "DistributedError", "NIRError", "UsageError", "OnlineError", "CATALOGUE"]


@dataclass(frozen=True)
class Problem:
    """One defect in a spec: code, where (class, method) and the symbol at fault."""

    code: str
    cls: str
    method: str
    symbol: str
    message: str

    def __str__(self) -> str:
        where = f"{self.cls}.{self.method}" if self.method else self.cls
        return f"[{self.code}] {where}: {self.message}"


class SpecError(_BaseSpecError):
    """All problems found in one neuron spec, raised together when the class is defined."""

    def __init__(self, problems: list[Problem]):
        self.problems = tuple(problems)
        self.codes = tuple(p.code for p in problems)
        NeuroDSLError.__init__(self, problems[0].code, "\n".join(str(p) for p in problems))
        self.args = ("\n".join(str(p) for p in problems),)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class NIRError(NeuroDSLError):
    """A model or graph NIR exchange cannot handle (``neurodsl.nir_io``): ND501 export, ND502 import node,
    ND503 graph structure."""


class DistributedError(NeuroDSLError):
    """Splitting the time axis across processes is not possible (``neurodsl.distributed``, codes 6xx)."""


class UsageError(NeuroDSLError):
    """The ``neurodsl`` command line or a ``neurodsl.testing`` tool was used wrongly (codes 8xx)."""


class OnlineError(NeuroDSLError):
    """An online learning rule (``neurodsl.online``) cannot run this model or call (codes 9xx)."""


CATALOGUE: dict[str, tuple[str, str]] = {
    # spec (raised when a Neuron subclass is defined or a variant is selected)
    "ND101": ("a method reads `self.<name>` that is no state, parameter or option, an expression uses a symbol "
              "not available in that method, or charge never uses one of its inputs",
              "declare it with nd.State / nd.Param, fix the spelling, or drop the unused input"),
    "ND102": ("`charge` or `reset` returns a dict key that is not a state",
              "return only declared state names"),
    "ND103": ("a state or parameter name clashes with an nn.Module/Neuron attribute",
              "rename it (e.g. `v_th` instead of `forward`)"),
    "ND104": ("a method returns the wrong kind of value: charge/reset need a dict of scalar expressions, "
              "fire one scalar expression (not a comparison, tuple or tensor)",
              "return `dict(state=expr)` from charge/reset and `expr` from fire (spike = expr >= 0)"),
    "ND105": ("an expression divides by a constant zero", "fix the denominator"),
    "ND106": ("an unsupported function or operation was applied to a symbol (e.g. math.exp, torch.exp, `if x > 0`)",
              "use neurodsl's functions: nd.exp, nd.log, nd.sqrt, nd.sigmoid, nd.tanh, nd.erf, nd.erfc, nd.atan, "
              "nd.sin, nd.cos, abs, nd.minimum, nd.maximum, nd.relu, nd.clamp, nd.where (nd.eq, nd.ne)"),
    "ND107": ("an expression contains a constant that is not a finite float64 number (nan, inf, nd.exp(1000.0), "
              "`10**400`), or a method computes one with Python's math (math.log(-1.0))",
              "use finite constants, and neurodsl's functions so constants are checked"),
    "ND108": ("a State default is neither a number nor the name of a parameter", "use a float or a Param's name"),
    "ND109": ("the class lacks `charge` or `fire`, or `charge` takes no input argument",
              "define charge(self, x, ...) and fire(self)"),
    "ND110": ("an option was given a value it does not accept", "pass one of the option's listed values"),
    "ND111": ("a state, parameter or input name is not a plain identifier or starts with an underscore",
              "use names like `v`, `tau_a`"),
    "ND112": ("the spec declares no state", "declare at least one nd.State"),
    "ND113": ("a condition is not one: nd.where got a Python bool or a number-valued expression, or a method "
              "compares states/parameters/inputs with == or != (on symbols a structural test that folds to a "
              "constant True/False)",
              "use a comparison (`self.v > 0`), `nd.eq(a, b)` / `nd.ne(a, b)`, or `abs(a - b) < eps`"),
    "ND114": ("a method returns nothing: charge, fire or reset returns None (a missing `return`), or charge "
              "returns an empty dict (its inputs would be ignored)",
              "return dict(state=expr, ...) from charge, an expression from fire; reset may return {} to keep "
              "every state"),
    "ND115": ("an expression contains a constant that is not real (1 + 2j, nd.log(-1.0), nd.sqrt(-2.0))",
              "equations are real-valued: fix the constant"),
    "ND116": ("an expression is too large: deeper than spec_checks.MAX_DEPTH (64) nested operations or more "
              "than MAX_NODES (2000) operations written out",
              "split it with an extra state, or simplify it"),
    "ND117": ("charge, fire or reset has the wrong form: a staticmethod/classmethod/non-function, keyword-only, "
              "`*args` or `**kwargs` arguments, defaults, a generator/async function, fire with arguments, or reset "
              "without exactly one spike argument",
              "def charge(self, x, ...), def fire(self), def reset(self, s)"),
    "ND118": ("a Param default is not a finite real number within float32 (a string, None, a list, a bool, "
              "`10**400`, inf), or learnable is not a bool",
              "nd.Param(2.0); pass per-neuron values to the constructor as tensors"),
    "ND119": ("`variants` is not a dict of name to non-empty tuple of hashable values, or a variant is named like "
              "a state, a parameter or a constructor keyword (backend, surrogate, parallel, ...)",
              "variants = dict(mode=('a', 'b')) with a name of its own"),
    "ND120": ("a surrogate is invalid: alpha is not a positive finite number, or a Custom primitive/gradient is "
              "not one supported expression of (u, alpha) that depends on u, or fails or is non-finite on tensors",
              "write it with neurodsl's functions (nd.sigmoid, nd.exp, nd.where, abs, ...) of u and alpha"),
    # instantiation
    "ND121": ("a keyword argument names no parameter or option of the neuron", "check the spelling"),
    "ND122": ("`learnable` names something that is not a parameter, or is not a name or a list of names (e.g. True)",
              "list parameter names only: learnable=('tau',), learnable='tau', or learnable=Cls.spec.params"),
    "ND123": ("a parameter value is not a number or a floating tensor, or is not finite in float32 (nan, 10**400)",
              "pass a finite float or a float tensor"),
    "ND124": ("step_mode, backend or max_iterations has an unknown value",
              "step_mode: 'm' or 's'; backend: 'auto' or a registered backend ('torch', 'triton'); max_iterations: "
              "a positive int or None"),
    "ND141": ("parallel='scan'/'matmul' was asked for a neuron without a parallel form (nonlinear charge or "
              "reset), or exact mode with smooth=True", "use parallel='sequential' (or 'auto')"),
    "ND131": ("a surrogate given only by its gradient was asked to learn alpha, or used in smooth mode",
              "give the surrogate a primitive, or keep alpha fixed"),
    "ND132": ("`surrogate` is not a neurodsl surrogate", "use nd.surrogate.ATan() etc. or nd.surrogate.Custom"),
    "ND133": ("replace_lif_nodes (or nd.zoo.LIF.from_spikingjelly) met a SpikingJelly surrogate that no neurodsl "
              "surrogate equals (e.g. SuperSpike, or spiking=False)",
              "pass surrogate=nd.surrogate.<...> (e.g. replace_lif_nodes(model, surrogate=nd.surrogate.ATan()))"),
    "ND134": ("charge, fire or reset raised an unexpected exception when evaluated on symbols (e.g. a KeyError "
              "in the method's own code)", "fix the method; the message names the exception"),
    "ND135": ("a method works on symbols but fails on tensors (e.g. sympy.exp instead of nd.exp), or gives other "
              "values on tensors than the equation captured on symbols (something folded: == on a value, an `if` "
              "on a parameter); checked on float64 tensors at two points when the class is defined",
              "use neurodsl's functions, nd.where with a comparison, nd.eq / nd.ne"),
    # code generation
    "ND201": ("a constant subexpression is not a real number", "check the equations for complex results"),
    "ND202": ("generated code would contain a non-finite constant", "check for divisions by zero"),
    "ND203": ("a function has no printer for the chosen backend", "use a supported function"),
    "ND204": ("a where/Piecewise has no default branch", "use nd.where(cond, a, b)"),
    "ND205": ("a backend's template and its context builder disagree on the names the template uses (a defect "
              "in a backend, caught before any code is generated)", "declare every name the template reads in its "
                                                                   "`{#- uses: ... -#}` header and build exactly those"),
    # backends
    "ND301": ("backend='triton' was requested but triton is not installed", "pip install triton"),
    "ND302": ("backend='triton' on CPU tensors without the Triton interpreter",
              "set TRITON_INTERPRET=1 before importing triton, or use backend='torch'"),
    "ND303": ("backend='triton' on a device other than CPU or CUDA", "use backend='torch'"),
    "ND304": ("a torch op was called with a kernel key no layer registered in this process (e.g. a compiled "
              "graph loaded into a fresh process)", "run or build the layer once in this process first"),
    "ND305": ("backend= names no registered backend", "use 'auto' or one of kernels_gen.backends.names()"),
    "ND306": ("backend='c' where no working C compiler was found: the command (cc/gcc/clang on PATH, or "
              "NEURODSL_CC) is missing, or cannot build and load a small shared library with its flags "
              "(NEURODSL_CFLAGS); backend='auto' then runs the torch backend on CPU instead",
              "install gcc (or clang), or set NEURODSL_CC / NEURODSL_CFLAGS, or use backend='torch'"),
    "ND307": ("backend='c' on tensors that are not on the CPU (CUDA, meta)",
              "use backend='auto' (Triton on CUDA) or backend='torch'"),
    "ND308": ("the C compiler failed on a generated kernel (its last output lines are in the message)",
              "set NEURODSL_CFLAGS to flags the compiler accepts, or use backend='torch'"),
    "ND309": ("a built C kernel library does not load (e.g. the cache directory is on a file system mounted "
              "noexec)",
              "set NEURODSL_CACHE_DIR to a directory on an exec-mounted file system, or use backend='torch'"),
    "ND310": ("forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) or neurodsl.online met a backend that "
              "has no tangent kernel", "use backend='torch' (any device) or backend='triton'"),
    "ND311": ("a forward-mode tangent reached a parameter that the layer's kernels do not differentiate (kernel "
              "options chosen without it)", "make the parameter learnable (learnable=('tau',)), or pass it without a "
              "tangent"),
    "ND312": ("a second derivative through a neuron layer: a backward through gradients made with "
              "create_graph=True (gradient penalties, torch.autograd.functional.jvp / hvp / hessian)",
              "use torch.func.jvp or torch.autograd.forward_ad for forward-mode derivatives; second-order "
              "derivatives of the generated kernels are not supported"),
    # inputs
    "ND401": ("an input has the wrong rank for the step mode", "multi-step: [T, *shape]; single-step: [*shape]"),
    "ND402": ("the number of inputs differs from charge's arguments", "call layer(x) or layer(x, y) as declared"),
    "ND403": ("inputs differ in shape, device or dtype", "pass inputs of one shape, device and dtype"),
    "ND404": ("the time dimension is 0", "pass at least one time step"),
    "ND405": ("an input is not a floating tensor", "convert it, e.g. x.float()"),
    "ND406": ("inputs and the module's tensors are on different devices", "move the module with .to(device)"),
    "ND407": ("a parameter's shape does not broadcast (right-aligned) against the per-step input shape",
              "use a scalar, a per-feature tensor, or [C, 1, 1] for [B, C, H, W]"),
    "ND408": ("the carried state does not match the input shape (batch changed without reset)",
              "call layer.reset_state() (or neurodsl.reset_states(model)) between batches"),
    "ND409": ("parallel='matmul' where the recurrence matrix A has a per-neuron parameter or depends on the input",
              "use parallel='scan' (or 'auto')"),
    "ND410": ("`state=` names something that is no state, or gives a value that is not a number or a floating tensor "
              "broadcasting against the per-step shape; or `layer.<state> = value` with a value that is neither",
              "pass state={name: tensor} with the layer's state names (layer.spec.states), or call reset_state()"),
    # NIR exchange (neurodsl.nir_io.NIRError)
    "ND501": ("to_nir met something NIR cannot represent: a module or neuron without a NIR node (e.g. ALIF, "
              "nn.ReLU), a soft reset, nn.Conv2d outside SeqToBatch, a Flatten over time/batch, a Linear on "
              "non-vector samples, a parameter that is not per neuron, or c_decay/v_decay = 1",
              "use the layers docs/nir.md lists, reset_mode='hard', SeqToBatch(nn.Conv2d(...)), "
              "nn.Flatten(start_dim=2)"),
    "ND502": ("from_nir met a node without a neurodsl counterpart (e.g. nir.LI, nir.Conv1d) or "
              "neuron parameters outside the mapping (LIF: r not 1 or tau/dt, v_leak != v_reset; IF: r != 1/dt; "
              "CubaLIF: v_leak or v_reset != 0, r != tau_mem/dt, w_in != tau_syn/dt)",
              "pass the dt the graph was exported with; see the mapping table in docs/nir.md"),
    "ND503": ("from_nir got a graph with other than one Input and one Output, or with a node no edge feeds or "
              "no path from the Input reaches", "give the graph one Input and one Output, each node fed from it"),
    "ND504": ("to_nir or from_nir got a dt that is not a positive finite number",
              "pass the length of one step in NIR's time unit, e.g. dt=1e-3"),
    # distributed (neurodsl.distributed.TimeSplit)
    "ND601": ("TimeSplit was given something other than a neurodsl Neuron, or a neuron whose dynamics are not a "
              "reset-free linear recurrence (nonlinear charge, or a spike-driven reset)",
              "use a reset-free linear neuron (e.g. nd.zoo.LIF.without_reset()); run neurons with reset on one device"),
    "ND602": ("a TimeSplit layer was called without an initialized torch.distributed process group, or on a "
              "process outside its group",
              "call torch.distributed.init_process_group(...) first (torchrun sets it up), on every rank of the group"),
    # on-disk kernel cache (kernels_gen.cache)
    "ND701": ("a cache key or backend name would not make a safe file name (keys: 1-64 ASCII letters or digits; "
              "backends: a lower-case identifier)", "pass the hex key of plan_key(...) and 'torch', 'triton' or "
              "'parallel'; class names may be anything (the file name uses cache.safe_label(name))"),
    "ND702": ("the cache dir is unusable and so is the private fallback `$TMPDIR/neurodsl-cache-<uid>` (a link, "
              "another user's, or writable by others); kernels then run from memory, uncached, and "
              "`neurodsl cache list` / `clear` fail", "remove the fallback dir, or set NEURODSL_CACHE_DIR to a directory "
              "you own that nobody else can write"),
    "ND703": ("NEURODSL_CACHE_TRUST_SHARED has a value other than 1 or 0",
              "set it to 1 to use a cache dir others can write (you run what they put there), or 0 / unset it"),
    # command line and testing tools (neurodsl.errors.UsageError)
    "ND801": ("a command-line target names a file that does not exist, a directory, or a file that is not Python "
              "source", "pass FILE.py or FILE.py:Class of an existing file, a zoo name, or module:Class"),
    "ND802": ("importing a neuron file failed: a syntax error, an exception, or sys.exit() while it was imported",
              "fix the line the message names; put script code under `if __name__ == '__main__':`"),
    "ND803": ("no neuron class found: an unknown zoo name, a file that defines no nd.Neuron subclass with charge "
              "and fire (classes it only imports do not count), or a :Class / module:Class that is missing or no "
              "Neuron", "name a zoo neuron, define the class in the file, or name an imported one as module:Class"),
    "ND804": ("a count on the command line is below 1 (check --trials, plot --neurons / --steps, the campaign's "
              "--examples / --max-steps)", "pass a positive number"),
    "ND805": ("an output path's directory does not exist (plot --out, the campaign's --out)",
              "create the directory first or write elsewhere"),
    "ND806": ("a reference check compared nothing: every neuron's spikes flipped near the threshold, or the "
              "reference's fire values were not finite", "draw other inputs, e.g. neurodsl.testing.inputs_for"),
    "ND807": ("the fuzzing campaign was asked for --device cuda where torch sees no CUDA device",
              "use --device cpu (with --backend triton the kernels run in the Triton interpreter)"),
    # online learning (neurodsl.online.OnlineError)
    "ND901": ("an online rule was given something other than an nn.Sequential of layers and neurodsl neurons, a "
              "model without a neuron, or a neuron with more than one input",
              "wrap the model: nn.Sequential(nn.Linear(...), nd.zoo.LIF(), ...); one input per neuron"),
    "ND902": ("the rule cannot follow this chain: eprop needs an nn.Linear feeding each neuron layer (one trace per "
              "synapse), and eprop/ottt need each parameterised module to feed a neuron layer directly",
              "use 'ottt' or 'sltt' for convolutions, put parameter-free modules before the Linear/Conv2d, or use "
              "'rtrl' (small models)"),
    "ND903": ("ottt needs a closed-form leak: the neuron's charge Jacobian ∂F/∂v is not constant and diagonal, the "
              "input enters states with different leaks, or the leak has a per-neuron parameter",
              "use 'eprop' (exact per-neuron traces), or a scalar time constant"),
    "ND904": ("gradients() / compare_grads() got an unknown algorithm name",
              "use 'bptt', 'rtrl', 'eprop', 'ottt' or 'sltt'"),
    "ND905": ("a rule's step got a batch or feature shape other than the steps before it, without reset()",
              "call rule.reset() before each new sequence"),
    "ND906": ("the deferred mode was given inputs that are not a [T, batch, ...] sequence, or asked for an "
              "algorithm without a deferred form", "pass inputs [T, batch, ...] and algorithm 'eprop'"),
}
