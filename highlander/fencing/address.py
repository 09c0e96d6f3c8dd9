"""Where a fence device is: the ``ip`` and ``ipport`` options, read one way for every agent.

fence-agents' agents each read ``ip`` their own way; ``fence_redfish`` also
takes ``host:port`` and ``[v6]:port`` there. Ours all read it that way, so a
device keeps its address when it moves between agents and an IPv6 address
is written alike for all. The framework splits the address once, before any
device is contacted; drivers get a bare host and a port number.
"""

from __future__ import annotations


def split(ip: str, port: int | None) -> tuple[str, int | None]:
    """The host and TCP port of ``ip``, given ``port`` (ipport, or the agent's default).

    ``[v6]`` brackets are removed; a port written into ``ip`` (``host:port``,
    ``[v6]:port``) wins over ``port``, as in fence_redfish. A bare IPv6
    address (``fe80::1``) has no port in it. Raises ValueError with the
    operator's one line.
    """
    host = ip.strip()
    written = None
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest.startswith(":"):
            written = rest[1:]
        elif rest:
            raise ValueError(f"ip {ip.strip()!r}: write an IPv6 address as [address] or [address]:port")
    elif host.count(":") == 1:
        host, _, written = host.partition(":")
    if written is not None:
        if not written.isdigit():
            raise ValueError(f"ip {ip.strip()!r}: {written!r} after the colon is not a TCP port number")
        port = int(written)
        if not 0 < port < 65536:
            raise ValueError(f"ip {ip.strip()!r}: port {port} is not a TCP port (1 to 65535)")
    if not host:
        raise ValueError("ip: give the device's address or host name")
    return host, port


def join(host: str, port: int) -> str:
    """``host:port`` for messages and URLs, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
