"""The declarative validator of untrusted JSON (p2ptools.eval.schema): each spec refuses what it
should, naming the field, and returns what fits unchanged."""

from __future__ import annotations

import math

import pytest

from p2ptools.eval.schema import (
    Invalid,
    boolean,
    file_name,
    first_difference,
    integer,
    list_of,
    mapping,
    nullable,
    number,
    record,
    string,
    tuple_of,
)

SPEC = record(
    {"n": integer(0, 10), "w": number(positive=True), "ok": boolean, "names": list_of(file_name(".npy"), max_len=2),
     "pair": tuple_of(integer(), string(choices=("a", "b"))), "maybe": nullable(string(r"[0-9]+x[0-9]+")), "counts": mapping(string(), integer(0))},
    {"extra": integer()},
)  # fmt: skip
GOOD = {"n": 3, "w": 0.5, "ok": True, "names": ["x.npy"], "pair": [1, "a"], "maybe": None, "counts": {"16x16": 2}}


def test_what_fits_comes_back_unchanged():
    assert SPEC(GOOD, "") == GOOD
    assert SPEC({**GOOD, "extra": 4, "maybe": "16x16"}, "")["maybe"] == "16x16"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"n": True}, "part.n", "whole number"),
        ({"n": 3.0}, "part.n", "whole number"),
        ({"n": 11}, "part.n", "[0, 10]"),
        ({"w": math.nan}, "part.w", "finite"),
        ({"w": math.inf}, "part.w", "finite"),
        ({"w": 0}, "part.w", "> 0"),
        ({"ok": 1}, "part.ok", "true or false"),
        ({"names": ["a.npy", "b.npy", "c.npy"]}, "part.names", "at most 2"),
        ({"pair": [1]}, "part.pair", "2 elements"),
        ({"pair": [1, "c"]}, "part.pair[1]", "one of 'a', 'b'"),
        ({"maybe": "16"}, "part.maybe", "like"),
        ({"counts": {"a": -1}}, "part.counts.a", "[0, inf]"),
        ({"counts": []}, "part.counts", "an object"),
        ({"surprise": 1}, "part.surprise", "unknown key"),
    ],
)
def test_a_misfit_names_its_field(change, field, problem):
    with pytest.raises(Invalid) as info:
        SPEC({**GOOD, **change}, "part")
    assert info.value.field == field and problem in info.value.problem


def test_a_missing_key_is_named():
    with pytest.raises(Invalid, match=r"^part\.w: missing$"):
        SPEC({k: v for k, v in GOOD.items() if k != "w"}, "part")


@pytest.mark.parametrize("name", ["../x.npy", "a/x.npy", "/x.npy", "..", ".npy", ".hidden.npy", "a\\x.npy", "c:x.npy", "x\0.npy", "x.png", 7, None])
def test_file_names_stay_in_their_folder(name):
    with pytest.raises(Invalid, match="plain file name"):
        SPEC({**GOOD, "names": [name]}, "part")


def test_first_difference():
    a = {"x": 1, "y": {"z": [1, 2]}}
    assert first_difference(a, {"x": 1, "y": {"z": [1, 2]}}) is None
    assert first_difference(a, {"x": 1, "y": {"z": [1, 3]}}, "context") == "context.y.z[1]"
    assert first_difference(a, {"x": 1, "y": {"z": [1]}}) == "y.z"
    assert first_difference(a, {"x": 1.0, "y": {"z": [1, 2]}}) == "x"  # 1 and 1.0: another type
    assert first_difference(a, {"y": {"z": [1, 2]}, "w": 0}) == "x"


def test_json_value_keeps_types_and_bounds_depth_and_numbers():
    from p2ptools.eval.schema import json_value

    spec = json_value(depth=2)
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": 3}}
    assert spec(value, "info") == value and isinstance(spec(value, "info")["b"]["c"], int)
    with pytest.raises(Invalid, match=r"info\.b\.c\.d"):
        spec({"b": {"c": {"d": [1]}}}, "info")
    with pytest.raises(Invalid, match=r"info\.a\[1\]"):
        spec({"a": [1, float("nan")]}, "info")
    with pytest.raises(Invalid, match="expected a JSON value"):
        spec({"a": object()}, "info")
