"""Agent declarations: what is accepted, and a DeclarationError for every
contradiction, raised when the declaration is made."""

from __future__ import annotations

import pytest

from highlander.ocf import codes
from highlander.ocf.codes import OCFError
from highlander.ocf.spec import Action, Agent, DeclarationError, Parameter


def handler(res: object) -> int:
    return codes.SUCCESS


def other_handler(res: object) -> int:
    return codes.SUCCESS


def param(name: str = "p", **kw: object) -> Parameter:
    return Parameter(name, "short", "long", **kw)  # type: ignore[arg-type]


def basic_actions() -> list[Action]:
    return [
        Action("start", handler, timeout=20),
        Action("stop", handler, timeout=20, strict=False),
        Action("monitor", handler, timeout=20, interval=10),
    ]


def agent(parameters: list[Parameter] | None = None, actions: list[Action] | None = None) -> Agent:
    return Agent(
        "t",
        "1.0",
        "short",
        "long",
        parameters=[param()] if parameters is None else parameters,
        actions=basic_actions() if actions is None else actions,
    )


# --- codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "ocf_name"),
    [
        (codes.SUCCESS, 0, "OCF_SUCCESS"),
        (codes.ERR_GENERIC, 1, "OCF_ERR_GENERIC"),
        (codes.ERR_ARGS, 2, "OCF_ERR_ARGS"),
        (codes.ERR_UNIMPLEMENTED, 3, "OCF_ERR_UNIMPLEMENTED"),
        (codes.ERR_PERM, 4, "OCF_ERR_PERM"),
        (codes.ERR_INSTALLED, 5, "OCF_ERR_INSTALLED"),
        (codes.ERR_CONFIGURED, 6, "OCF_ERR_CONFIGURED"),
        (codes.NOT_RUNNING, 7, "OCF_NOT_RUNNING"),
        (codes.RUNNING_PROMOTED, 8, "OCF_RUNNING_PROMOTED"),
        (codes.FAILED_PROMOTED, 9, "OCF_FAILED_PROMOTED"),
        (codes.DEGRADED, 190, "OCF_DEGRADED"),
        (codes.DEGRADED_PROMOTED, 191, "OCF_DEGRADED_PROMOTED"),
    ],
)
def test_exit_codes_have_the_api_values_and_names(code: int, value: int, ocf_name: str) -> None:
    assert code == value
    assert codes.name(code) == ocf_name


def test_an_unknown_exit_code_is_named_by_number() -> None:
    assert codes.name(42) == "exit code 42"


def test_ocf_error_carries_code_and_reason() -> None:
    error = OCFError(codes.ERR_CONFIGURED, "x is wrong")
    assert error.code == codes.ERR_CONFIGURED
    assert error.reason == "x is wrong"
    assert str(error) == "OCF_ERR_CONFIGURED: x is wrong"


# --- parameters -------------------------------------------------------------------


def test_a_parameter_knows_its_environment_name() -> None:
    assert param("listen_port").env_name == "OCF_RESKEY_listen_port"


@pytest.mark.parametrize(
    ("declared_type", "raw", "value"),
    [
        ("string", " spaced ", " spaced "),
        ("integer", " 42 ", 42),
        ("integer", "-3", -3),
        ("boolean", "TRUE", True),
        ("boolean", "yes", True),
        ("boolean", "on", True),
        ("boolean", "1", True),
        ("boolean", "y", True),
        ("boolean", "False", False),
        ("boolean", "no", False),
        ("boolean", "off", False),
        ("boolean", "0", False),
        ("boolean", "n", False),
    ],
)
def test_parse_turns_the_string_into_a_typed_value(declared_type: str, raw: str, value: object) -> None:
    assert param(type=declared_type).parse(raw) == value


def test_parse_select_accepts_only_its_choices() -> None:
    p = param("mode", type="select", choices=("fast", "safe"))
    assert p.parse("safe") == "safe"
    with pytest.raises(ValueError, match="mode='SAFE' is not one of: fast, safe"):
        p.parse("SAFE")


@pytest.mark.parametrize(
    ("declared_type", "raw", "message"),
    [
        ("integer", "ten", "n='ten' is not an integer"),
        ("integer", "1.5", "n='1.5' is not an integer"),
        ("boolean", "maybe", "n='maybe' is not a boolean"),
    ],
)
def test_parse_names_the_parameter_when_the_value_is_bad(declared_type: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        param("n", type=declared_type).parse(raw)


def test_parse_runs_the_check_on_the_typed_value() -> None:
    seen: list[object] = []

    def positive(value: object) -> str | None:
        seen.append(value)
        return None if isinstance(value, int) and value > 0 else "must be positive"

    p = param("n", type="integer", check=positive)
    assert p.parse("3") == 3
    with pytest.raises(ValueError, match="n='-1': must be positive"):
        p.parse("-1")
    assert seen == [3, -1]


@pytest.mark.parametrize(
    ("declared_type", "value", "text"),
    [("boolean", True, "true"), ("boolean", False, "false"), ("integer", 5, "5"), ("string", "a b", "a b")],
)
def test_format_is_the_environment_form(declared_type: str, value: object, text: str) -> None:
    assert param(type=declared_type).format(value) == text


def test_a_valid_default_is_accepted() -> None:
    assert param(type="integer", default=5).default == 5
    assert param(type="boolean", default=False).default is False
    assert param(type="select", choices=("a", "b"), default="b").default == "b"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "listen-port"}, id="dash-in-name"),
        pytest.param({"name": "a b"}, id="space-in-name"),
        pytest.param({"type": "float"}, id="unknown-type"),
        pytest.param({"type": "select"}, id="select-without-choices"),
        pytest.param({"type": "string", "choices": ("a",)}, id="choices-without-select"),
        pytest.param({"required": True, "default": "x"}, id="required-with-default"),
        pytest.param({"shortdesc": ""}, id="no-shortdesc"),
        pytest.param({"longdesc": ""}, id="no-longdesc"),
        pytest.param({"type": "integer", "default": "abc"}, id="default-not-an-integer"),
        # format() would render the string "false" as "true" in the meta-data
        pytest.param({"type": "boolean", "default": "false"}, id="boolean-default-given-as-a-string"),
        pytest.param({"type": "select", "choices": ("a",), "default": "b"}, id="default-not-a-choice"),
        pytest.param(
            {"type": "integer", "default": 0, "check": lambda v: "must be positive" if v < 1 else None},
            id="default-fails-its-check",
        ),
    ],
)
def test_a_bad_parameter_declaration_raises_declaration_error(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"name": "p", "shortdesc": "short", "longdesc": "long", **kwargs}
    with pytest.raises(DeclarationError, match="parameter"):
        Parameter(**arguments)  # type: ignore[arg-type]


# --- actions ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -5])
def test_an_action_needs_a_positive_timeout(timeout: int) -> None:
    with pytest.raises(DeclarationError, match="timeout must be positive"):
        Action("start", handler, timeout=timeout)


@pytest.mark.parametrize("depth", [5, 15, 30, -10])
def test_an_action_depth_is_an_ocf_check_level(depth: int) -> None:
    with pytest.raises(DeclarationError, match="depth must be one of"):
        Action("monitor", handler, timeout=20, depth=depth)


@pytest.mark.parametrize("depth", [None, 0, 10, 20])
def test_ocf_check_levels_are_accepted_depths(depth: int | None) -> None:
    assert Action("monitor", handler, timeout=20, depth=depth).depth == depth


def test_actions_are_strict_unless_declared_otherwise() -> None:
    assert Action("start", handler, timeout=20).strict is True
    assert Action("stop", handler, timeout=20, strict=False).strict is False


# --- agents ---------------------------------------------------------------------------


def test_an_agent_advertises_meta_data_and_validate_all() -> None:
    a = agent()
    assert [x.name for x in a.actions] == ["start", "stop", "monitor", "meta-data", "validate-all"]
    assert a.action("meta-data") is not None
    assert a.action("validate-all") is not None


def test_action_lookup_returns_the_first_declaration_or_none() -> None:
    a = agent(
        actions=[
            *basic_actions()[:2],
            Action("monitor", handler, timeout=20, interval=10, depth=0),
            Action("monitor", handler, timeout=40, interval=60, depth=20),
        ]
    )
    monitor = a.action("monitor")
    assert monitor is not None and monitor.timeout == 20
    assert a.action("promote") is None


def test_depths_are_sorted_and_default_to_zero() -> None:
    a = agent(
        actions=[
            *basic_actions()[:2],
            Action("monitor", handler, timeout=20, depth=20),
            Action("monitor", handler, timeout=20),
            Action("monitor", handler, timeout=20, depth=10),
        ]
    )
    assert a.depths("monitor") == (0, 10, 20)
    assert a.depths("start") == (0,)
    assert a.depths("promote") == ()


def test_a_reloadable_parameter_with_reload_agent_is_accepted() -> None:
    a = agent(
        parameters=[param("level", reloadable=True)],
        actions=[*basic_actions(), Action("reload-agent", handler, timeout=20)],
    )
    assert a.parameters[0].reloadable


@pytest.mark.parametrize(
    ("parameters", "actions", "message"),
    [
        pytest.param([param("a"), param("a")], None, "declared twice", id="duplicate-parameter"),
        pytest.param([], None, "needs a parameter", id="no-parameter"),
        pytest.param(None, basic_actions()[1:], "'start' action is mandatory", id="no-start"),
        pytest.param(None, [basic_actions()[0], basic_actions()[2]], "'stop' action is mandatory", id="no-stop"),
        pytest.param(None, basic_actions()[:2], "'monitor' action is mandatory", id="no-monitor"),
        pytest.param(
            None,
            [*basic_actions(), Action("promote", None, timeout=20)],
            "'promote' has no handler",
            id="no-handler",
        ),
        pytest.param(
            None,
            [*basic_actions(), Action("monitor", other_handler, timeout=20, depth=10)],
            "one handler for all its depths",
            id="two-handlers-for-one-action",
        ),
        pytest.param(
            [param("level", reloadable=True)],
            None,
            "need a 'reload-agent' action",
            id="reloadable-without-reload",
        ),
    ],
)
def test_a_bad_agent_declaration_raises_declaration_error(
    parameters: list[Parameter] | None, actions: list[Action] | None, message: str
) -> None:
    with pytest.raises(DeclarationError, match=message):
        agent(parameters, actions)


def test_declaration_error_is_a_value_error() -> None:
    assert issubclass(DeclarationError, ValueError)
