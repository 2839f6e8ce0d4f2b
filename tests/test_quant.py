import pytest

from qpde.errors import ConfigError
from qpde.quant import SCENARIOS, parse_scenario


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_parses(name):
    spec = parse_scenario(name)
    assert spec.name == name
    assert spec.is_float == (name == "fp32")


def test_bits_and_cost_bits():
    assert (parse_scenario("w4a8").w_bits, parse_scenario("w4a8").a_bits) == (4, 8)
    assert parse_scenario("fp32").cost_bits == (32, 32)
    assert parse_scenario("w8a16").cost_bits == (8, 16)


@pytest.mark.parametrize("bad", ["w4", "int8", "w1a8", "w8a64", "W4A8", ""])
def test_unknown_scenario_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="scenario"):
        parse_scenario(bad)
