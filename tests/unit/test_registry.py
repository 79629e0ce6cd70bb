"""Unit tests of the generic registry and its one error type."""

from __future__ import annotations

import pytest

from glu_prune.catalog.registry import Registry, UnknownName, unknown_name


def _colours() -> Registry[int]:
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1)
    reg.register("green", 2)
    reg.register("blue", 3)
    return reg


def test_lookup_and_order():
    reg = _colours()
    assert reg.get("green") == 2 and reg["blue"] == 3
    assert list(reg) == reg.names() == ["red", "green", "blue"]  # registration order, not sorted
    assert list(reg.items()) == [("red", 1), ("green", 2), ("blue", 3)]
    assert list(reg.values()) == [1, 2, 3] and list(reg.keys()) == ["red", "green", "blue"]
    assert len(reg) == 3 and "red" in reg and "pink" not in reg and ["red"] not in reg
    assert dict(reg) == {"red": 1, "green": 2, "blue": 3}
    assert reg.kind == "colour" and "red, green, blue" in repr(reg)


def test_items_built_from_pairs():
    reg = Registry("colour", [("red", 1), ("green", 2)])
    assert reg.names() == ["red", "green"]


def test_register_as_decorator_returns_the_function():
    reg: Registry = Registry("scorer")

    @reg.register("double")
    def double(x):
        return 2 * x

    assert reg["double"] is double and double(2) == 4
    assert reg.register("none", None) is None and reg["none"] is None  # None is an item too


def test_unknown_name_message_lists_the_known_names():
    reg = _colours()
    with pytest.raises(UnknownName) as info:
        reg.get("pink")
    assert str(info.value) == "unknown colour 'pink'; known: red, green, blue"  # no quotes around
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(UnknownName, match=r"^unknown colour 'pink'; known: red, green, blue$"):
        reg["pink"]
    with pytest.raises(UnknownName, match=r"unknown colour \['x'\]"):
        reg.get(["x"])  # an unhashable name is just unknown


def test_unknown_name_is_a_key_error_and_a_value_error():
    err = unknown_name("model", "gpt2", ["a", "b"])
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert str(err) == "unknown model 'gpt2'; known: a, b" and err.args == (str(err),)
    assert str(UnknownName()) == ""
    for caught in (KeyError, ValueError):
        with pytest.raises(caught):
            _colours()["pink"]


def test_get_with_a_default_is_dict_get():
    reg = _colours()
    assert reg.get("pink", None) is None and reg.get("pink", 0) == 0 and reg.get("red", 0) == 1


@pytest.mark.parametrize("name", ["", 3, None])
def test_names_must_be_non_empty_strings(name):
    with pytest.raises(ValueError, match=r"a colour name must be a non-empty string, got"):
        _colours().register(name, 4)


def test_a_name_registers_once():
    reg = _colours()
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        reg.register("red", 9)
    assert reg["red"] == 1
