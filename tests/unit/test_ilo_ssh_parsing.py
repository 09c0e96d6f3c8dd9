"""Reading iLO's SMASH CLP output: prompt detection, response header, power state.

Pure functions of text; the property tests cut the same output at every
possible place and in every possible way, as a network and a slow BMC may.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlander.adapters.ssh import parse_fingerprint
from highlander.fencing.agents.ilo_ssh import (
    DEFAULT_PROMPT,
    IloSshDriver,
    PromptReader,
    parse_response,
    power_state,
)
from highlander.fencing.driver import OFF, ON, DeviceFailure, FenceError

SHOW_ON = (
    "show /system1\r\n\r\nstatus=0\r\nstatus_tag=COMMAND COMPLETED\r\nTue Sep 17 19:29:23 2019\r\n"
    "\r\n\r\n\r\n/system1\r\n  Targets\r\n    firmware1\r\n  Properties\r\n"
    "    name=ProLiant DL380 G7\r\n    oemhp_server_name=dl380g7\r\n    enabledstate=enabled\r\n"
    "  Verbs\r\n    cd version exit show reset set start stop\r\n\r\n</>hpiLO-> "
)
REFUSED = (
    "start /system1\r\r\nstatus=2\r\nstatus_tag=COMMAND PROCESSING FAILED\r\n"
    "error_tag=COMMAND ERROR-UNSPECIFIED\r\nTue Sep 17 20:41:10 2019\r\n\r\n"
    "Server power already on.\r\n\r\n</>hpiLO-> "
)


def read_all(chunks: list[bytes]) -> list[str]:
    """The lines of the output, checking the prompt is seen only at its end
    (before the prompt's trailing space is fine: that space changes nothing)."""
    reader = PromptReader(DEFAULT_PROMPT)
    for i, chunk in enumerate(chunks):
        if reader.feed(chunk):
            assert not b"".join(chunks[i + 1 :]).strip(), "prompt seen before the output ended"
            return reader.take()
    raise AssertionError("no prompt")


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def test_whole_output_is_one_response() -> None:
    lines = read_all([SHOW_ON.encode()])
    assert lines[0] == "show /system1"
    response = parse_response("show /system1", lines)
    assert response.ok
    assert power_state(response) == ON


@given(st.lists(st.integers(min_value=0, max_value=len(SHOW_ON)), max_size=40))
def test_any_split_reads_the_same(points: list[int]) -> None:
    """However the output is cut (a byte at a time included), the lines and
    the state read are those of the whole output, and the prompt is seen
    only with the last piece."""
    whole = read_all([SHOW_ON.encode()])
    assert read_all(cut(SHOW_ON.encode(), points)) == whole


def test_every_single_cut_point() -> None:
    data = SHOW_ON.encode()
    whole = read_all([data])
    for point in range(1, len(data)):
        lines = read_all([data[:point], data[point:]])
        assert lines == whole, point
        assert power_state(parse_response("show /system1", lines)) == ON


def test_a_partial_value_is_never_a_state() -> None:
    """What fence_ilo_ssh matches (``EnabledState=(.*)`` on a partial buffer)
    is never looked at: until the line and the prompt arrive, no answer."""
    reader = PromptReader(DEFAULT_PROMPT)
    head, _, _ = SHOW_ON.partition("enabledstate=")
    assert not reader.feed((head + "enabledstate=enab").encode())
    assert not reader.feed(b"led\r\n  Verbs\r\n")
    assert reader.feed(b"\r\n</>hpiLO-> ")


def test_multibyte_characters_split_across_reads() -> None:
    text = "show /system1\r\nstatus=0\r\nstatus_tag=COMMAND COMPLETED\r\n  oemhp_server_name=nœud-ü\r\n"
    text += "  enabledstate=disabled\r\n</>hpiLO-> "
    data = text.encode()
    split = data.index("œ".encode()) + 1  # inside the two-byte character
    lines = read_all([data[:split], data[split:]])
    assert "  oemhp_server_name=nœud-ü" in lines
    assert power_state(parse_response("show /system1", lines)) == OFF


def test_prompt_after_cd_and_custom_prompts() -> None:
    reader = PromptReader(DEFAULT_PROMPT)
    assert reader.feed(b"status=0\r\n</system1>hpiLO-> ")
    reader = PromptReader(DEFAULT_PROMPT)
    assert reader.feed(b"status=0\r\n</>hpeiLO-> ")  # iLO 7
    reader = PromptReader(r"MyBMC>")
    assert not reader.feed(b"status=0\r\n</>hpiLO-> ")
    assert reader.feed(b"\r\nMyBMC> ")


def test_a_prompt_inside_a_line_is_not_the_end() -> None:
    reader = PromptReader(DEFAULT_PROMPT)
    assert not reader.feed(b"echo: </>hpiLO-> was typed\r\n")
    assert not reader.feed(b"</>hpiLO-> and more")


def test_refusal_carries_the_device_text() -> None:
    response = parse_response("start /system1", read_all([REFUSED.encode()]))
    assert not response.ok
    assert (response.status, response.error_tag) == (2, "COMMAND ERROR-UNSPECIFIED")
    assert response.message == "Server power already on."
    assert response.failure() == (
        "iLO refused 'start /system1': Server power already on. "
        "(status=2, COMMAND PROCESSING FAILED, COMMAND ERROR-UNSPECIFIED)"
    )


def test_output_without_a_status_header_is_a_failure() -> None:
    with pytest.raises(DeviceFailure, match="no status= line .*sh: show: not found"):
        parse_response("show /system1", ["show /system1", "sh: show: not found"])
    with pytest.raises(DeviceFailure, match="no status_tag"):
        parse_response("show /system1", ["status=0", "enabledstate=enabled"])
    with pytest.raises(DeviceFailure, match="unreadable"):
        parse_response("show /system1", ["status=zero"])


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("enabled", ON),
        ("disabled", OFF),
        ("Enabled", ON),
        ("DISABLED", OFF),
        ("Shutting Down", ON),
        ("Starting", ON),
        ("Enabled but Offline", ON),
    ],
)
def test_enabledstate_values(value: str, state: str) -> None:
    response = parse_response("show /system1", ["status=0", "status_tag=COMMAND COMPLETED", f"EnabledState={value}"])
    assert power_state(response) == state


@pytest.mark.parametrize("value", ["", "enab", "unknown", "not applicable"])
def test_other_enabledstate_values_are_errors(value: str) -> None:
    response = parse_response("show /system1", ["status=0", "status_tag=COMMAND COMPLETED", f"enabledstate={value}"])
    with pytest.raises(DeviceFailure, match="not a power state"):
        power_state(response)


def test_missing_enabledstate() -> None:
    response = parse_response("show /system1", ["status=0", "status_tag=COMMAND COMPLETED", "name=x"])
    with pytest.raises(DeviceFailure, match="no enabledstate"):
        power_state(response)


def test_fingerprints() -> None:
    fp = "SHA256:" + "A" * 43
    assert parse_fingerprint(fp) == fp
    assert parse_fingerprint(fp + "=") == fp
    assert parse_fingerprint(f"2048 {fp} root@ilo (RSA)") == fp  # ssh-keygen -lf's whole line
    for bad in ("", "MD5:12:34", "12:34:56:78", "SHA256:short"):
        with pytest.raises(ValueError, match="ssh-keygen -lf"):
            parse_fingerprint(bad)
        if bad:  # the agent names its option
            with pytest.raises(FenceError, match=f"^ssh_fingerprint '{bad}' is not a SHA256 fingerprint"):
                IloSshDriver.from_options({"ip": "192.0.2.1", "ssh_fingerprint": bad})
