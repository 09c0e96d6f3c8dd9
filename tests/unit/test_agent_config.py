"""The sign-state and remote-signer agents read their configuration file by
one rule, decided on the problem's code: a file that cannot be read is not
installed (OCF_ERR_INSTALLED), any other problem is the configuration's
(OCF_ERR_CONFIGURED); the exit reason is the message the operator reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from highlander.agents import privval, signstate
from highlander.ocf import codes
from highlander.ocf.runtime import EXIT_REASON_PREFIX, execute
from highlander.ocf.spec import Agent

SIGNSTATE = """\
node = "node-a"
listen = "10.0.0.1:7480"
state_dir = "/var/lib/highlander/signstate"
pki_dir = "/etc/highlander/pki"
socket = "/run/highlander/signstate.sock"
{extra}
[peers]
node-b = "10.0.0.2:7480"
node-c = "10.0.0.3:7480"
"""
PRIVVAL = """\
chain_id = "test-chain"
key_file = "/etc/highlander/privval/key.json"
state_file = "/var/lib/highlander/privval/state.json"
register = "/run/highlander/signstate.sock"
control = "/run/highlander/privval.sock"
nodes = ["tcp://127.0.0.1:26659"]
{extra}
"""
AGENTS = {"signstate": (signstate.AGENT, SIGNSTATE), "privval": (privval.AGENT, PRIVVAL)}


def validate(agent: Agent, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """validate-all's exit code and exit reasons."""
    code = execute(agent, ["validate-all"], {"HA_LOGFACILITY": "none", "OCF_RESKEY_config": str(config)})
    err = capsys.readouterr().err
    return code, [line[len(EXIT_REASON_PREFIX) :] for line in err.splitlines() if line.startswith(EXIT_REASON_PREFIX)]


@pytest.mark.parametrize("name", sorted(AGENTS))
@pytest.mark.parametrize("directory", [False, True], ids=["missing", "a directory"])
def test_a_file_that_cannot_be_read_is_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, directory: bool
) -> None:
    config = tmp_path / f"{name}.toml"
    if directory:
        config.mkdir()
    code, reasons = validate(AGENTS[name][0], config, capsys)
    assert code == codes.ERR_INSTALLED
    assert len(reasons) == 1 and reasons[0].startswith(f"{config}: cannot read: "), reasons


@pytest.mark.parametrize("name", sorted(AGENTS))
@pytest.mark.parametrize(
    "extra, reason",
    [
        ('timeout = "soon"', "timeout must be seconds"),
        ("colour = 1", "unknown setting(s) colour"),
        ('node = "x', "not valid TOML"),
    ],
    ids=["bad value", "unknown setting", "not TOML"],
)
def test_any_other_problem_is_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, extra: str, reason: str
) -> None:
    agent, template = AGENTS[name]
    config = tmp_path / f"{name}.toml"
    config.write_text(template.format(extra=extra))
    code, reasons = validate(agent, config, capsys)
    assert code == codes.ERR_CONFIGURED, reasons
    assert len(reasons) == 1 and reasons[0].startswith(f"{config}: ") and reason in reasons[0], reasons


@pytest.mark.parametrize(
    "name, extra", [("signstate", 'socket_group = ["cannot read"]'), ("privval", 'key_id = "cannot read"')]
)
def test_words_in_a_value_decide_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, extra: str
) -> None:
    """The message says "cannot read", the problem is a bad value: only its code counts."""
    agent, template = AGENTS[name]
    config = tmp_path / f"{name}.toml"
    config.write_text(template.format(extra=extra))
    code, reasons = validate(agent, config, capsys)
    assert len(reasons) == 1 and "cannot read" in reasons[0], reasons
    assert code == codes.ERR_CONFIGURED
