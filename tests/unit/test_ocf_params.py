"""Reading OCF_RESKEY_* into typed values: every problem at once, defaults
standing in for what is missing or invalid."""

from __future__ import annotations

import pytest

from highlander.ocf import codes
from highlander.ocf.params import parse_parameters, unknown_parameters
from highlander.ocf.spec import Action, Agent, Parameter


def _handler(res: object) -> int:
    return codes.SUCCESS


def _even(value: object) -> str | None:
    return None if isinstance(value, int) and value % 2 == 0 else "must be even"


AGENT = Agent(
    "t",
    "1.0",
    "short",
    "long",
    parameters=[
        Parameter("name", "s", "l", required=True),
        Parameter("count", "s", "l", type="integer", default=3),
        Parameter("enabled", "s", "l", type="boolean", default=True),
        Parameter("mode", "s", "l", type="select", choices=("fast", "safe"), default="safe"),
        Parameter("pairs", "s", "l", type="integer", default=2, check=_even),
        Parameter("note", "s", "l"),
    ],
    actions=[
        Action("start", _handler, timeout=20),
        Action("stop", _handler, timeout=20, strict=False),
        Action("monitor", _handler, timeout=20),
    ],
)


def env(**params: str) -> dict[str, str]:
    return {f"OCF_RESKEY_{k}": v for k, v in params.items()}


def test_all_set_and_valid() -> None:
    values, problems = parse_parameters(
        AGENT, env(name="a", count="7", enabled="no", mode="fast", pairs="4", note="hi")
    )
    assert problems == []
    assert values == {"name": "a", "count": 7, "enabled": False, "mode": "fast", "pairs": 4, "note": "hi"}


def test_unset_parameters_take_their_defaults() -> None:
    values, problems = parse_parameters(AGENT, env(name="a"))
    assert problems == []
    assert values == {"name": "a", "count": 3, "enabled": True, "mode": "safe", "pairs": 2, "note": None}


def test_an_empty_value_counts_as_unset() -> None:
    values, problems = parse_parameters(AGENT, env(name="a", count="", note=""))
    assert problems == []
    assert values["count"] == 3
    assert values["note"] is None


@pytest.mark.parametrize("raw", [None, ""])
def test_a_missing_required_parameter_is_a_problem_naming_it(raw: str | None) -> None:
    values, problems = parse_parameters(AGENT, {} if raw is None else env(name=raw))
    assert problems == ["required parameter 'name' is not set"]
    assert values["name"] is None


@pytest.mark.parametrize(
    ("params", "problem", "name"),
    [
        ({"count": "many"}, "count='many' is not an integer", "count"),
        ({"enabled": "perhaps"}, "enabled='perhaps' is not a boolean (use true or false)", "enabled"),
        ({"mode": "turbo"}, "mode='turbo' is not one of: fast, safe", "mode"),
        ({"pairs": "3"}, "pairs='3': must be even", "pairs"),
    ],
)
def test_an_invalid_value_is_a_problem_and_falls_back_to_the_default(
    params: dict[str, str], problem: str, name: str
) -> None:
    values, problems = parse_parameters(AGENT, env(name="a", **params))
    assert problems == [problem]
    assert values[name] == AGENT.parameters[[p.name for p in AGENT.parameters].index(name)].default


def test_every_problem_is_reported_at_once() -> None:
    _, problems = parse_parameters(AGENT, env(count="x", enabled="x", mode="x", pairs="1"))
    assert len(problems) == 5
    for name in ("'name'", "count=", "enabled=", "mode=", "pairs="):
        assert any(name in p for p in problems), name


def test_unknown_parameters_are_the_undeclared_reskeys_sorted() -> None:
    environ = {
        **env(name="a", nmae="typo", zeta="1"),
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_crm_feature_set": "3.16.2",
        "OCF_RESOURCE_INSTANCE": "v",
        "PATH": "/bin",
    }
    assert unknown_parameters(AGENT, environ) == ["nmae", "zeta"]


def test_no_unknown_parameters_in_what_pacemaker_itself_sets() -> None:
    environ = {
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_CRM_meta_on_node": "node-a",
        "OCF_RESKEY_crm_feature_set": "3.16.2",
    }
    assert unknown_parameters(AGENT, environ) == []
