"""Spec fuzzing with the strategies users get from ``neurodsl.testing`` (CI-sized; the long campaign
is ``python -m neurodsl.testing --examples 500``)."""
import pytest
from hypothesis import given, settings, strategies as st

import neurodsl as nd
from neurodsl.testing import DEFECTS, check_against_reference, invalid_neurons, neurons


@given(neurons(), st.integers(1, 6), st.integers(1, 17), st.integers(0, 2 ** 16))
def test_random_valid_specs_match_reference_torch(cls, T, n, seed):
    check_against_reference(cls(learnable=("k", "g", "v_th"), backend="torch"), T, n, seed)


@settings(max_examples=4)
@given(neurons(max_states=2), st.integers(1, 4), st.integers(0, 2 ** 16))
def test_random_valid_specs_match_reference_interpreter(cls, T, seed):
    check_against_reference(cls(learnable=("k", "g", "v_th"), backend="triton"), T, 5, seed)


@given(invalid_neurons())
def test_random_invalid_specs_raise_typed_errors_at_definition(case):
    name, namespace, code, method = case
    with pytest.raises(nd.SpecError) as err:
        type(f"Bad_{name}", (nd.Neuron,), namespace)
    assert code in err.value.codes
    assert any(p.method == method for p in err.value.problems if p.code == code)


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_every_defect_kind(name):
    code, method, make = DEFECTS[name]
    with pytest.raises(nd.SpecError) as err:
        type(f"Bad_{name}", (nd.Neuron,), make())
    assert err.value.code == code and err.value.problems[0].method == method


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_constant_subexpressions_are_folded_before_cse(backend):
    """Found by the 2000-spec campaign: a CSE temporary holding only a constant (exp(-1.5)) became a
    Python float in generated torch code, and torch.maximum(float, tensor) failed in backward."""
    class Const(nd.Neuron):
        v = nd.State(0.0)
        k = nd.Param(0.5)

        def charge(self, x):
            return dict(v=self.k * self.v + nd.tanh(nd.maximum(nd.exp(-1.5) * 2.0, self.v)) + x)

        def fire(self):
            return self.v - 1.0 + 0.3 * nd.tanh(nd.maximum(nd.exp(-1.5) * self.v, nd.exp(-1.5)))

    assert check_against_reference(Const(learnable=("k",), backend=backend), 5, 7, 3)
