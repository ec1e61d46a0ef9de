"""The strict schema converter of sideline.core.schema, on plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import pytest

from sideline.core.errors import ConfigurationError, SchemaError
from sideline.core.schema import check_schema, structure, structure_partial, type_name, unstructure


@attrs.define
class Point:
    x: float
    y: float = 0.0


@attrs.define
class Shape:
    kind: Literal["line", "poly"]
    points: Sequence[Point]
    labels: dict[str, int] = attrs.Factory(dict)
    meta: Any = None
    weight: int | None = None


def error(data: Any, schema: type[Any] = Shape) -> str:
    with pytest.raises(SchemaError) as caught:
        structure(data, schema, "s")
    return str(caught.value)


def test_valid_data_is_structured_with_defaults() -> None:
    shape = structure({"kind": "line", "points": [{"x": 1}, {"x": 2.5, "y": -1}],
                       "meta": {"any": ["thing"]}}, Shape, "s")
    assert shape == Shape("line", [Point(1.0), Point(2.5, -1.0)], {}, {"any": ["thing"]})
    assert type(shape.points[0].x) is float
    assert unstructure(shape, "s") == {"kind": "line", "points": [{"x": 1.0, "y": 0.0},
                                       {"x": 2.5, "y": -1.0}], "labels": {},
                                       "meta": {"any": ["thing"]}, "weight": None}


def test_literals_dicts_and_sequences_are_strict() -> None:
    assert error({"kind": "circle", "points": "xy", "labels": {"a": "1"}, "weight": 1.5}) == (
        "s: field 'kind' expected 'line' | 'poly', got str 'circle'; field 'points' expected "
        "Sequence[Point], got str 'xy'; field 'labels[a]' expected int, got str '1'; "
        "field 'weight' expected int | None, got float 1.5")
    assert error({"kind": "line", "points": [{"x": "1"}, 3]}) == (
        "s: field 'points[0].x' expected float, got str '1'; field 'points[1]' expected Point, "
        "got int 3")


def test_not_an_object_at_all() -> None:
    assert error(["x"], Point) == "s: expected an object of Point fields, got list ['x']"


def test_an_instance_makes_a_round_trip_so_its_field_types_are_checked() -> None:
    assert structure(Point(1.0), Point, "s") == Point(1.0)
    assert error(Point("1"), Point) == "s: field 'x' expected float, got str '1'"  # type: ignore[arg-type]


def test_partial_checks_only_the_keys_given() -> None:
    structure_partial({"kind": "poly"}, Shape, "s")
    with pytest.raises(SchemaError) as caught:
        structure_partial({"kind": "x", "nope": 1, "points": [{"y": 1}]}, Shape, "s")
    assert str(caught.value) == ("s: field 'kind' expected 'line' | 'poly', got str 'x'; unknown "
                                 "key 'nope'; missing required field 'points[0].x' (float)")


def test_unstructure_refuses_values_json_cannot_carry() -> None:
    with pytest.raises(SchemaError, match=r"s: value\['meta'\] is a set"):
        unstructure(Shape("line", [], meta={1, 2}), "s")


def test_check_schema_and_type_names() -> None:
    with pytest.raises(ConfigurationError, match="x must be an attrs class"):
        check_schema(int, "x")
    assert check_schema(Shape, "x") is Shape
    assert [type_name(t) for t in (int, list[str], int | None, dict[str, Point], type(None))] == [
        "int", "list[str]", "int | None", "dict[str, Point]", "None"]
