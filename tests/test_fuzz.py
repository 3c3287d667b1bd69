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
