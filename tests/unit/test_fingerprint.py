"""Canonical parameter hashing and cache keys (property tests)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from conveyor.core.fingerprint import (
    cache_key,
    canonical_json,
    code_fingerprint,
    explain_difference,
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
params_st = st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=5)
inputs_st = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    max_size=4,
)


@given(params_st)
def test_canonical_json_ignores_key_order(params):
    reordered = dict(reversed(list(params.items())))
    assert canonical_json(params) == canonical_json(reordered)


@given(params_st, inputs_st)
def test_equal_parts_give_equal_keys(params, inputs):
    key1, _ = cache_key("c:f", "code", params, inputs)
    key2, _ = cache_key("c:f", "code", dict(params), dict(inputs))
    assert key1 == key2


@given(params_st, inputs_st, st.text(min_size=1, max_size=6), json_values)
def test_changing_a_parameter_changes_the_key(params, inputs, name, value):
    changed = {**params, name: value}
    same = canonical_json(changed) == canonical_json(params)
    key1, _ = cache_key("c:f", "code", params, inputs)
    key2, _ = cache_key("c:f", "code", changed, inputs)
    assert (key1 == key2) == same


@given(params_st, inputs_st, st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=64))
def test_changing_an_input_fingerprint_changes_the_key(params, inputs, name, sha):
    changed = {**inputs, name: sha}
    key1, _ = cache_key("c:f", "code", params, inputs)
    key2, _ = cache_key("c:f", "code", params, changed)
    assert (key1 == key2) == (changed == inputs)


@given(params_st, inputs_st)
def test_component_and_code_are_part_of_the_key(params, inputs):
    base, _ = cache_key("c:f", "code", params, inputs)
    assert cache_key("c:g", "code", params, inputs)[0] != base
    assert cache_key("c:f", "code2", params, inputs)[0] != base


def test_floats_and_ints_are_distinct_and_negative_zero_folds():
    assert canonical_json({"x": 1}) != canonical_json({"x": 1.0})
    assert canonical_json({"x": -0.0}) == canonical_json({"x": 0.0})
    assert canonical_json({"x": math.inf}) != canonical_json({"x": -math.inf})


def helper_one(x: int) -> int:
    return x + 1


def helper_two(x: int) -> int:
    return x + 2


def uses_helper(x: int) -> int:
    return helper_one(x)


def test_code_fingerprint_follows_project_helpers(monkeypatch):
    before = code_fingerprint(uses_helper)
    assert before == code_fingerprint(uses_helper)
    monkeypatch.setitem(uses_helper.__globals__, "helper_one", helper_two)
    assert code_fingerprint(uses_helper) != before


def test_explanations_name_what_changed():
    old = {"component": "a", "code": "1", "params": {"n": 1}, "inputs": {"data": "aaa"}}
    assert explain_difference(None, old) == "first execution of this step"
    new = {**old, "params": {"n": 2, "m": 1}}
    assert explain_difference(old, new) == "parameter 'm' added; parameter 'n' changed (1 -> 2)"
    assert explain_difference(old, {**old, "code": "2"}) == "code changed"
    assert "input 'data' changed" in explain_difference(old, {**old, "inputs": {"data": "bbb"}})
