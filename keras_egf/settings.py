"""How a setting of a dataclass config is declared: once, with its rule.

    depth: int = setting(1, "Hidden layers.", POSITIVE_INT)
    optimizer: str = setting("adam", "Optimizer.", registered(OPTIMIZERS))

A `Rule` feeds both the flag help (`flag_help`, `choices`) and the check
(`check_setting`); a `Relation` is a rule that reads other settings too.
Errors use keras_egf.validation's wording and are `SettingError`s, which
name the setting, so the binary can name its flag and results.json's reader
its key. `keras_egf.config` declares `ComparisonConfig` with these.
"""

import collections
import dataclasses

from keras_egf import validation


class SettingError(ValueError):
    """A setting `ComparisonConfig.validate` refuses; `setting` names it (the
    training binary names its flag, results.json's reader its key)."""

    def __init__(self, setting, message):
        super().__init__(message)
        self.setting = setting


Rule = collections.namedtuple(
    "Rule", ["text", "check", "choices", "register_with", "stores"],
    defaults=(None, None, False))
Rule.__doc__ = """What one setting's value must be, declared beside it.

text() -> str: the requirement, for the flag help ("a positive integer").
check(name, value): raises ValueError in keras_egf.validation's wording;
    returns the value.
choices() -> names, or None: the allowed values where they are names, read
    when called (a registry's grow).
register_with: where more choices come from (a registry's register
    function), or None for fixed choices.
stores: validate keeps what `check` returns (the parsed regularisers).
"""

Relation = collections.namedtuple("Relation", ["reads", "check"])
Relation.__doc__ = """A setting's rule that reads other settings (`reads`);
check(config) raises ValueError naming the setting. `keras_egf.grid`
checks every combination of these settings (`config.COMBINED_CHECKS`)."""

POSITIVE_INT = Rule(lambda: "a positive integer", validation.positive_int)


def at_least(low, low_open=False):
    """A finite number >= `low` (> with `low_open`)."""
    return Rule(lambda: f"a number {'>' if low_open else '>='} {low}",
                lambda name, value: validation.number_in(
                    name, value, low, low_open=low_open))


def in_interval(low, high, low_open=False):
    """A finite number in [low, high] ((low, high] with `low_open`)."""
    return Rule(lambda: f"a number in {'(' if low_open else '['}{low}, {high}]",
                lambda name, value: validation.number_in(
                    name, value, low, high, low_open=low_open))


def one_of(names, register_with=None):
    """One of `names`: a sequence, or a function giving the names now (a
    registry's, added to with `register_with`, which the error names)."""
    current = names if callable(names) else (lambda: tuple(names))
    hint = f" (or one registered with {register_with})" if register_with else ""

    def check(name, value):
        allowed = list(current())
        if value not in allowed:
            validation.fail(name, f"one of {allowed}{hint}", value)
        return value

    return Rule(lambda: "one of " + ", ".join(map(str, current())), check,
                current, register_with)


def registered(registry):
    """A name of `registry` (a `keras_egf.registry.Registry`), read when used."""
    return one_of(registry.names, registry.register_with)


def setting(default, help, rule=None, relation=None):
    """A config field: its default, help text, `Rule` (one setting) and
    `Relation` (a rule that reads other settings too)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "rule": rule, "relation": relation})


def choices(field):
    """The names `field` takes now (a registry's are read now), or None."""
    rule = field.metadata["rule"]
    return tuple(rule.choices()) if rule is not None and rule.choices else None


def is_registered(field):
    """Whether `field`'s choices come from a registry: they may grow after
    the flags are defined, so its flag takes any string and `validate`
    checks it."""
    rule = field.metadata["rule"]
    return rule is not None and rule.register_with is not None


def flag_help(field):
    """`field`'s help with its rule (read now), unless its flag lists fixed
    choices itself."""
    rule, text = field.metadata["rule"], field.metadata["help"]
    if rule is None or (rule.choices and not is_registered(field)):
        return text
    return f"{text} Must be {rule.text()}."


def check_setting(name, check, *args):
    """check(*args); its ValueError re-raised as a SettingError naming the
    setting `name`."""
    try:
        return check(*args)
    except SettingError:
        raise
    except ValueError as e:
        raise SettingError(name, str(e)) from None
