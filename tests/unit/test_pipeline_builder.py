"""Building pipelines: signatures, edges, parameters and the IR."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from conveyor import Dataset, Metrics, component, pipeline
from conveyor.core.ir import PipelineIR, topological_order
from conveyor.exceptions import (
    CycleError,
    MissingInputError,
    ParameterError,
    PipelineDefinitionError,
    TypeMismatchError,
    UnknownOutputError,
)


@component
def numbers(n: int = 3) -> list[int]:
    return list(range(n))


@component
def scale(values: list[int], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]


@component
def summarize(values: list[float]) -> Metrics:
    return Metrics(total=sum(values))


class Halves(NamedTuple):
    low: list[int]
    high: list[int]


@component
def halve(values: list[int]) -> Halves:
    mid = len(values) // 2
    return Halves(values[:mid], values[mid:])


@component
def needs_dataset(data: Dataset) -> int:
    return 0


@component
def produces_metrics() -> Metrics:
    return Metrics(a=1.0)


@pipeline
def good(n: int = 4, factor: float = 2.0) -> None:
    parts = halve(numbers(n))
    summarize(scale(parts.low, factor=factor))
    summarize(scale(parts.high))


def test_build_traces_steps_edges_and_parameters():
    ir = good.build({"n": "5"})
    assert [s.name for s in ir.steps] == [
        "numbers",
        "halve",
        "scale",
        "summarize",
        "scale_2",
        "summarize_2",
    ]
    assert ir.parameters == {"n": 5, "factor": 2.0}
    assert ir.step("numbers").params == {"n": 5}
    assert ir.step("scale").inputs["values"].step == "halve"
    assert ir.step("scale").inputs["values"].output == "low"
    assert ir.step("scale_2").inputs["values"].output == "high"
    assert ir.step("halve").outputs["low"].artifact_type == "JSON"
    assert ir.step("summarize").outputs["output"].artifact_type == "Metrics"


def test_ir_round_trips_through_json():
    ir = good.build({})
    again = PipelineIR.from_json(ir.to_json())
    assert again == ir
    assert again.fingerprint() == ir.fingerprint()


def test_components_are_plain_functions_outside_pipelines():
    assert numbers(2) == [0, 1]
    assert halve([1, 2, 3, 4]) == Halves([1, 2], [3, 4])


def test_unknown_pipeline_parameter_suggests_the_right_one():
    with pytest.raises(ParameterError, match=r"no parameter 'facter'.*did you mean 'factor'"):
        good.build({"facter": 3})


def test_pipeline_parameter_of_the_wrong_type_names_it():
    with pytest.raises(ParameterError, match=r"parameter 'n' expects int, got 'many'"):
        good.build({"n": "many"})


def test_step_parameter_of_the_wrong_type_names_step_and_parameter():
    @pipeline
    def bad() -> None:
        scale(numbers(), factor="big")

    with pytest.raises(ParameterError, match=r"step 'scale': parameter 'factor' expects float"):
        bad.build()


def test_missing_input_names_step_and_input():
    @pipeline
    def bad() -> None:
        scale()

    with pytest.raises(MissingInputError, match=r"step 'scale'.*input 'values' is not connected"):
        bad.build()


def test_type_mismatch_names_both_ends():
    @pipeline
    def bad() -> None:
        needs_dataset(numbers())

    with pytest.raises(
        TypeMismatchError, match=r"numbers\.output produces list.*needs_dataset\.data expects"
    ):
        bad.build()


def test_output_used_but_never_produced():
    @pipeline
    def bad() -> None:
        scale(numbers().squares)

    with pytest.raises(
        UnknownOutputError, match=r"step 'numbers'.*never produces an output 'squares'"
    ):
        bad.build()


def test_unknown_keyword_argument_suggests_the_right_one():
    @pipeline
    def bad() -> None:
        scale(numbers(), factr=3.0)

    with pytest.raises(ParameterError, match=r"did you mean 'factor'"):
        bad.build()


def test_cycle_in_ir_is_rejected_with_the_path():
    data = json.loads(good.build({}).to_json())
    by_name = {s["name"]: s for s in data["steps"]}
    by_name["numbers"]["inputs"] = {
        "values": {"step": "scale", "output": "output", "python_type": "list", "accepts": ["JSON"]}
    }
    with pytest.raises(CycleError, match=r"cycle: .*numbers.*halve.*scale"):
        PipelineIR.from_dict(data)


def test_ir_edge_to_a_missing_output_is_rejected():
    data = json.loads(good.build({}).to_json())
    data["steps"][1]["inputs"]["values"]["output"] = "nope"
    with pytest.raises(UnknownOutputError, match=r"halve\.values.*numbers\.nope"):
        PipelineIR.from_dict(data)


def test_topological_order_puts_producers_first():
    ir = good.build({})
    order = topological_order(ir)
    for step in ir.steps:
        for up in step.upstream:
            assert order.index(up) < order.index(step.name)


def test_component_without_hints_is_rejected_at_definition():
    with pytest.raises(PipelineDefinitionError, match=r"argument 'x' has no type hint"):

        @component
        def untyped(x) -> int:  # type: ignore[no-untyped-def]
            return 1

    with pytest.raises(PipelineDefinitionError, match=r"no return annotation"):

        @component
        def no_return(x: int):  # type: ignore[no-untyped-def]
            return 1


class Opaque:
    pass


def test_output_without_materializer_is_rejected_at_definition():
    with pytest.raises(PipelineDefinitionError, match=r"output 'output'.*Opaque"):

        @component
        def opaque() -> Opaque:
            return Opaque()


def test_calling_a_pipeline_directly_explains_how_to_run_it():
    with pytest.raises(PipelineDefinitionError, match=r"conveyor run"):
        good()


@component
def make_dataset() -> Dataset:
    raise NotImplementedError  # never runs: only the build is tested


def test_a_handle_return_type_is_one_output():
    @pipeline
    def handles() -> None:
        needs_dataset(make_dataset())

    ir = handles.build()
    assert list(ir.step("make_dataset").outputs) == ["output"]
    assert ir.step("make_dataset").outputs["output"].artifact_type == "Dataset"


@component
def maybe(values: list[int], extra: Dataset | None = None) -> int:
    return len(values)


def test_optional_input_may_be_passed_none_explicitly():
    @pipeline
    def optional(with_extra: bool = False) -> None:
        maybe(numbers(), extra=None)

    assert optional.build().step("maybe").inputs.keys() == {"values"}


def test_after_orders_steps_without_data():
    from conveyor import after

    @pipeline
    def ordered() -> None:
        gate = summarize(scale(numbers()))
        with after(gate):
            halve(numbers.configure(name="other")())

    ir = ordered.build()
    assert ir.step("halve").upstream == ["other", "summarize"]
    assert ir.step("other").upstream == ["summarize"]
    assert PipelineIR.from_json(ir.to_json()) == ir


def test_after_outside_a_pipeline_or_with_a_value_is_an_error():
    from conveyor import after

    with pytest.raises(PipelineDefinitionError, match=r"inside a @pipeline"), after():
        pass

    @pipeline
    def bad() -> None:
        with after(3):
            numbers()

    with pytest.raises(PipelineDefinitionError, match=r"takes outputs of steps, got int"):
        bad.build()
