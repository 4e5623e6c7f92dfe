"""spec.flags: `samprivacy trial`'s flags come from TrialConfig's fields, and parse back into a TrialConfig."""

import argparse
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from samprivacy.errors import ConfigError
from samprivacy.spec import TrialConfig
from samprivacy.spec.flags import add_flags, flag_name, flag_values


class Inner(BaseModel):
    noise: float = Field(1.0, gt=0, description="noise multiplier σ")
    clip: float | None = Field(None, description="clipping norm C")


class Lead(BaseModel):
    FLAG_VALUE: ClassVar[str] = "count"
    count: int = Field(3, description="how many")
    share: float = 0.5


class Toy(BaseModel):
    rate: float = Field(0.1, description="a rate")
    steps: int = 5
    mode: Literal["fast", "slow"] = Field("fast", description="how")
    on: bool = False
    maybe: bool | None = None
    sizes: tuple[int, ...] | None = None
    names: tuple[str, ...] | None = None
    options: dict[str, int] | None = None
    level: float | Literal["auto"] = "auto"
    dp: Inner | None = Field(None, description="differential privacy")
    lead: Lead | None = None
    always: Inner = Inner()


def parse(model, argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, model)
    return flag_values(parser.parse_args(argv), model), parser


def test_flags_given_are_the_only_fields_set_so_the_models_defaults_apply():
    values, _ = parse(Toy, [])
    assert values == {}
    assert Toy(**values) == Toy()


def test_every_kind_of_field_becomes_a_flag_of_its_type():
    values, _ = parse(Toy, ["--rate", "0.5", "--steps", "7", "--mode", "slow", "--on", "--no-maybe", "--sizes",
                            "4,2", "--names", "a, b", "--options", "{x: 1}", "--level", "0.25"])
    assert values == {"rate": 0.5, "steps": 7, "mode": "slow", "on": True, "maybe": False, "sizes": (4, 2),
                      "names": ("a", "b"), "options": {"x": 1}, "level": 0.25}
    assert parse(Toy, ["--level", "auto"])[0] == {"level": "auto"}


def test_nested_models_get_prefixed_flags_and_optional_ones_a_switch():
    values, _ = parse(Toy, ["--dp", "--dp-clip", "2", "--always-noise", "0.3"])
    assert values == {"dp": {"clip": 2.0}, "always": {"noise": 0.3}}
    assert Toy(**values).dp == Inner(clip=2.0)
    assert parse(Toy, ["--dp"])[0] == {"dp": {}} and Toy(dp={}).dp == Inner()


def test_an_optional_model_with_a_flag_value_takes_it_on_its_own_flag():
    values, _ = parse(Toy, ["--lead", "9", "--lead-share", "0.2"])
    assert values == {"lead": {"count": 9, "share": 0.2}}


@pytest.mark.parametrize("argv, message", [
    (["--dp-clip", "2"], "--dp-clip describes `dp`; add --dp"),
    (["--lead-share", "0.2"], "--lead-share describes `lead`; add --lead COUNT"),
])
def test_a_nested_flag_without_the_switch_names_the_switch(argv, message):
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy)
    with pytest.raises(ConfigError, match=message):
        flag_values(parser.parse_args(argv), Toy)


@pytest.mark.parametrize("argv", [["--steps", "x"], ["--sizes", "1,a"], ["--options", "[1]"], ["--level", "low"]])
def test_a_malformed_value_is_refused_by_the_parser(argv):
    with pytest.raises(argparse.ArgumentError):
        parse(Toy, argv)


def test_help_is_the_field_description_with_its_default():
    helps = {a.option_strings[0]: a.help for a in parse(Toy, [])[1]._actions if a.option_strings}
    assert helps["--rate"] == "a rate (default: 0.1)"
    assert helps["--dp"] == "differential privacy" and helps["--dp-noise"] == "noise multiplier σ (default: 1.0)"
    assert helps["--mode"] == "how (default: fast)"


def test_a_field_type_without_a_flag_is_refused_when_the_parser_is_built():
    class Odd(BaseModel):
        when: set[int] = set()

    with pytest.raises(TypeError, match="no command-line flag for field when"):
        add_flags(argparse.ArgumentParser(), Odd)


def test_every_trial_config_field_has_a_flag_with_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, TrialConfig)
    flags = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    for name, info in TrialConfig.model_fields.items():
        assert flag_name((name,)) in flags, name
        assert info.description and info.description in flags[flag_name((name,))].help, name
    assert "--population-rmia-reference-models" in flags and "--population-lira-variance" in flags


def test_trial_flags_build_the_trial_config():
    parser = argparse.ArgumentParser()
    add_flags(parser, TrialConfig)
    args = parser.parse_args(["--optimizer", "sam", "--rho", "0.1", "--hidden", "16,8", "--population", "6",
                              "--population-rmia-a", "0.3", "--no-augment", "--attacks", "loss,rmia"])
    config = TrialConfig(**flag_values(args, TrialConfig))
    assert (config.optimizer, config.rho, config.hidden, config.augment) == ("sam", 0.1, (16, 8), False)
    assert config.population.models == 6 and config.population.rmia.a == 0.3
    assert config.attacks == ("loss", "rmia") and config.epochs == TrialConfig.model_fields["epochs"].default
