"""The one SSH host-key policy (highlander.adapters.ssh.HostKeyPolicy), on real paramiko keys.

The drills' SshRunner (tests/cluster/test_ssh_runner.py, a real sshd) and
the iLO agent (tests/process/test_fence_ilo_ssh.py, the iLO simulator)
both use it; here its rule is shown case by case without a network: a pin
decides alone, otherwise known_hosts must list the very key, and every
refusal names the key shown and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import paramiko
import pytest

from highlander.adapters.ssh import HostKeyPolicy, SshError, fingerprint

HOST_KEY = paramiko.RSAKey.generate(1024)
IMPOSTOR = paramiko.RSAKey.generate(1024)


def known_hosts(path: Path, name: str, key: paramiko.PKey) -> Path:
    path.write_text(f"{name} {key.get_name()} {key.get_base64()}\n")
    return path


def test_a_pinned_fingerprint_decides_alone(tmp_path: Path) -> None:
    listed = known_hosts(tmp_path / "known_hosts", "[bmc]:2222", IMPOSTOR)
    policy = HostKeyPolicy("bmc", 2222, fingerprint=fingerprint(HOST_KEY), known_hosts=[listed], pin_option="pin")
    policy.check(HOST_KEY)
    assert policy.known_keys() == {}  # known_hosts is not even read
    with pytest.raises(SshError) as caught:
        policy.check(IMPOSTOR)
    message = str(caught.value)
    assert f"bmc:2222: host key ssh-rsa {fingerprint(IMPOSTOR)} does not match pin {fingerprint(HOST_KEY)}" in message
    assert message.endswith(f"then set pin={fingerprint(IMPOSTOR)})")


def test_known_hosts_must_list_the_very_key(tmp_path: Path) -> None:
    listed = known_hosts(tmp_path / "known_hosts", "bmc", HOST_KEY)  # port 22: the bare name
    policy = HostKeyPolicy("bmc", 22, known_hosts=[tmp_path / "missing", listed])
    policy.check(HOST_KEY)
    expected = f"is not the one .*known_hosts lists for bmc {re.escape(f'(ssh-rsa {fingerprint(HOST_KEY)})')}"
    with pytest.raises(SshError, match=expected):
        policy.check(IMPOSTOR)


def test_an_unknown_key_is_refused_and_never_learned(tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    policy = HostKeyPolicy("fe80::1", 830, known_hosts=[empty], pin_option="ssh_fingerprint")
    for _ in range(2):
        with pytest.raises(SshError) as caught:
            policy.check(HOST_KEY)
    message = str(caught.value)
    assert message.startswith(f"[fe80::1]:830: unknown host key ssh-rsa {fingerprint(HOST_KEY)}; refusing to log in")
    assert f"pin it with ssh_fingerprint={fingerprint(HOST_KEY)}" in message
    assert f"add the key to {empty} as '[fe80::1]:830 ssh-rsa <base64 key>'" in message
    assert empty.read_text() == ""


def test_an_unreadable_known_hosts_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    with pytest.raises(SshError, match="cannot read it"):
        HostKeyPolicy("bmc", known_hosts=[tmp_path]).known_keys()  # a directory


def test_an_ssh_client_follows_the_policy(tmp_path: Path) -> None:
    listed = known_hosts(tmp_path / "known_hosts", "[node]:2222", HOST_KEY)
    policy = HostKeyPolicy("node", 2222, known_hosts=[listed])
    client = paramiko.SSHClient()
    policy.apply_to(client)
    assert dict(client.get_host_keys().lookup("[node]:2222") or {}) == {"ssh-rsa": HOST_KEY}
    with pytest.raises(SshError, match="is not the one"):  # what paramiko asks the policy for a key it lacks
        policy.missing_host_key(client, "[node]:2222", IMPOSTOR)
