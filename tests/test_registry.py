"""keras_egf.registry: lookup when used, one error wording."""

import pytest

from keras_egf.registry import Registry


def test_lookup_register_and_error_wording():
    reg = Registry("widget", register_with="register_widget")
    reg.register("a", 1)
    reg.register("b", 2)
    assert reg["a"] == 1 and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert "a" in reg and "c" not in reg
    with pytest.raises(ValueError) as info:
        reg["c"]
    assert str(info.value) == (
        "Unknown widget 'c'. Supported: ['a', 'b']. Register one with register_widget.")


def test_registered_later_is_seen_and_duplicates_refused():
    reg = Registry("widget", register_with="register_widget")
    names_view = reg  # a holder keeps the registry, not a copy of its names
    reg.register("late", 3)
    assert "late" in names_view and reg.check("late") == "late"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("late", 4)
    reg.register("late", 4, overwrite=True)
    assert reg["late"] == 4
    reg.unregister("late")
    assert "late" not in reg
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", 5)
