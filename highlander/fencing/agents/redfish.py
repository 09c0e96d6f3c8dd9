"""fence_highlander_redfish: power fencing through a BMC's Redfish service.

Takes the same options as fence-agents' ``fence_redfish`` (``redfish_uri``,
``systems_uri``, ``ssl_insecure``; ``ip`` may carry ``host:port``) and adds
``ssl_ca_file``. What it does differently, on purpose:

- TLS is verified by default, against the system's trust store or the CA
  certificates in ``ssl_ca_file``; ``ssl_insecure=1`` is the explicit way out.
- On a BMC with several systems it never guesses (``fence_redfish`` takes the
  last one listed): it names them and asks for ``systems_uri`` or ``plug``.
- Every failure is one line saying what went wrong and what to check: a wrong
  password is "HTTP 401 Unauthorized: check username and password", not a
  KeyError traceback.

HTTPS is :class:`highlander.adapters.https.JsonClient`: one persistent TLS
connection (reopened only when the BMC closes it, as some do after each
answer), each socket operation bounded by ``login_timeout``, redirects only
on the BMC itself; this module speaks Redfish over it and words its
failures for the operator. Authentication is HTTP Basic on every request,
not a Redfish session: a session costs two more round trips
(create, delete), and one left behind by an agent that was killed mid-fence
holds one of the BMC's few session slots until it times out, which can lock
the next fencing attempt out. Basic auth leaves nothing behind, it is what
``fence_redfish`` sends (so a BMC that works with it works with this agent),
and sushy-emulator, the BMC the tests use, has no SessionService at all.
The password is only ever in the Authorization header, never in a message.

Redfish in brief: the service root (``/redfish/v1``) links ``Systems``, a
collection whose ``Members`` link each ComputerSystem; a system has a
``PowerState`` (On, Off, PoweringOn, PoweringOff, Paused) and an action
``#ComputerSystem.Reset`` whose ``target`` takes ``{"ResetType": ...}``:
ForceOff to fence, On to unfence, ForceRestart for a one-shot reset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from highlander.adapters import https
from highlander.fencing.driver import (
    OFF,
    ON,
    DeviceFailure,
    FenceError,
    LoginDenied,
    PowerDriver,
    Unreachable,
)
from highlander.fencing.spec import COMMON, FenceAgent, Option

log = logging.getLogger(__name__)

DEFAULT_PORT = https.DEFAULT_PORT
DEFAULT_ROOT = "/redfish/v1"
# Every request says which Redfish (OData) protocol version it speaks.
ODATA_HEADERS = {"OData-Version": "4.0"}
RESET_ACTION = "#ComputerSystem.Reset"

# Redfish PowerState -> ours. A system powering off still has power: it is not
# fenced until it reads Off. Paused keeps its memory and can resume: on.
POWER_STATES = {"On": ON, "PoweringOn": ON, "PoweringOff": ON, "Paused": ON, "Off": OFF}

# The ResetType for each request, with fall-backs for BMCs whose allowable
# values lack the first choice.
RESET_TYPES = {
    ON: ("On", "ForceOn"),
    OFF: ("ForceOff",),
    "reset": ("ForceRestart", "PowerCycle"),
}

# Redfish privileges a 403 means the account lacks.
PRIVILEGE = {"GET": "Login", "POST": "ConfigureComponents"}


class RedfishDriver(PowerDriver):
    """One BMC's ComputerSystem, reached through one :class:`~highlander.adapters.https.JsonClient`."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        username: str | None = None,
        password: str | None = None,
        redfish_uri: str = DEFAULT_ROOT,
        systems_uri: str | None = None,
        plug: str | None = None,
        ssl_ca_file: str | None = None,
        ssl_insecure: bool = False,
        timeout: float = 5,
    ) -> None:
        self.username = username
        self.redfish_uri = _path(redfish_uri or DEFAULT_ROOT, "redfish_uri")
        self.systems_uri = _path(systems_uri, "systems_uri") if systems_uri else None
        self.plug = plug or None
        self.ssl_ca_file = ssl_ca_file or None
        if ssl_insecure and self.ssl_ca_file:
            raise FenceError(
                "ssl_ca_file and ssl_insecure contradict each other: verify the BMC with "
                "ssl_ca_file, or (insecure) do not verify it with ssl_insecure, not both"
            )
        try:  # a bad ssl_* option fails before any traffic
            self._client = https.JsonClient(
                host,
                port,
                ca_file=self.ssl_ca_file,
                verify=not ssl_insecure,
                timeout=timeout,
                username=username,
                password=password,
                headers=ODATA_HEADERS,
            )
        except https.CaFileError as e:
            raise FenceError(
                f"ssl_ca_file {e.ca_file}: cannot load CA certificates from it ({e.reason}); give a PEM "
                "file with the certificate(s) of the CA that signed the BMC's certificate"
            ) from None
        self._systems: dict[str | None, str] = {}  # plug -> system URI
        self._targets: dict[str, tuple[str, list[str] | None]] = {}  # system URI -> reset action
        self._documents: dict[str, dict[str, Any]] = {}  # URI -> the last answer read there

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RedfishDriver:
        """The driver for the parsed options of :data:`AGENT`."""
        return cls(
            str(options["ip"]),
            int(options.get("ipport") or DEFAULT_PORT),
            username=options.get("username"),
            password=options.get("password"),
            redfish_uri=options.get("redfish_uri") or DEFAULT_ROOT,
            systems_uri=options.get("systems_uri"),
            plug=options.get("plug"),
            ssl_ca_file=options.get("ssl_ca_file"),
            ssl_insecure=bool(options.get("ssl_insecure")),
            timeout=float(options.get("login_timeout") or 5),
        )

    def __repr__(self) -> str:  # never the password
        return f"RedfishDriver({self.origin}, user={self.username!r})"

    @property
    def origin(self) -> str:
        return self._client.origin

    # -- PowerDriver

    def connect(self) -> None:
        """Open the TLS connection, check the credentials and find the system."""
        self._system(self.plug)

    def power_status(self, plug: str | None) -> str:
        uri = self._system(plug)
        system = self._get(uri)
        state = system.get("PowerState")
        if state is None:
            raise DeviceFailure(f"the system at {uri} reports no PowerState: its power cannot be read through Redfish")
        if state not in POWER_STATES:
            raise DeviceFailure(
                f"the system at {uri} reports PowerState {state!r}, not one of {', '.join(POWER_STATES)}"
            )
        log.debug("%s: PowerState %s", uri, state)
        return POWER_STATES[state]

    def set_power(self, plug: str | None, state: str) -> None:
        if state not in (ON, OFF):
            raise ValueError(f"state must be {ON!r} or {OFF!r}, not {state!r}")
        self._reset(self._system(plug), RESET_TYPES[state])

    def reset(self, plug: str | None) -> None:
        self._reset(self._system(plug), RESET_TYPES["reset"])

    def plugs(self) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        self._client.close()

    # -- the system

    def _system(self, plug: str | None) -> str:
        """The URI of the ComputerSystem to act on (found once, then remembered)."""
        plug = plug or self.plug
        if plug in self._systems:
            return self._systems[plug]
        if self.systems_uri:
            if plug:
                log.debug("systems_uri %s given: plug %r is not used", self.systems_uri, plug)
            uri = self.systems_uri
            self._get(uri)  # checks the credentials and that it exists, as discovery would
        else:
            uri = self._discover(plug)
        self._systems[plug] = uri
        return uri

    def _discover(self, plug: str | None) -> str:
        root = self._get(self.redfish_uri)
        collection_uri = _odata_id(
            root.get("Systems"),
            f"the service root {self.redfish_uri} has no Systems/@odata.id: is redfish_uri the service root?",
        )
        collection = self._get(collection_uri)
        members = collection.get("Members")
        if not isinstance(members, list):
            raise DeviceFailure(f"the Systems collection {collection_uri} has no Members list")
        uris = [_odata_id(m, f"a member of {collection_uri} has no @odata.id") for m in members]
        if not uris:
            raise DeviceFailure(f"the Systems collection {collection_uri} lists no system")
        if plug:
            return self._select(plug, uris, collection_uri)
        if len(uris) > 1:
            raise DeviceFailure(
                f"the BMC has {len(uris)} systems ({', '.join(uris)}): choose one with "
                "systems_uri=<URI> or plug=<system Id>"
            )
        log.debug("the BMC's only system: %s", uris[0])
        return uris[0]

    def _select(self, plug: str, uris: list[str], collection_uri: str) -> str:
        """The member whose Id (the last segment of its URI, or its Id or Name) is ``plug``."""
        by_segment = [u for u in uris if u.rstrip("/").rsplit("/", 1)[-1] == plug]
        if len(by_segment) == 1:
            return by_segment[0]
        matches = []
        for uri in uris:
            system = self._get(uri)
            if plug in (system.get("Id"), system.get("Name")):
                matches.append(uri)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise DeviceFailure(
                f"plug {plug!r} names {len(matches)} systems ({', '.join(matches)}): choose one with systems_uri=<URI>"
            )
        if len(uris) == 1:
            # Pacemaker passes the node's name as plug to every agent that has one; a
            # BMC with a single system has nothing to choose from.
            log.debug("plug %r names no system; using the BMC's only system %s", plug, uris[0])
            return uris[0]
        raise DeviceFailure(
            f"no system of {collection_uri} has Id or Name {plug!r}; the systems are "
            f"{', '.join(uris)}: give plug=<system Id> or systems_uri=<URI>"
        )

    def _reset(self, uri: str, choices: tuple[str, ...]) -> None:
        target, allowed = self._reset_action(uri)
        usable = [c for c in choices if allowed is None or c in allowed]
        if not usable:
            raise DeviceFailure(
                f"the system at {uri} does not allow ResetType {choices[0]} (it allows "
                f"{', '.join(map(str, allowed or ())) or 'nothing'})"
            )
        self._request("POST", target, {"ResetType": usable[0]})
        log.debug("%s: ResetType %s requested", uri, usable[0])

    def _reset_action(self, uri: str) -> tuple[str, list[str] | None]:
        if uri not in self._targets:
            # The actions of a system do not change: any answer read there will do.
            system = self._documents.get(uri) or self._get(uri)
            actions = system.get("Actions")
            action = actions.get(RESET_ACTION) if isinstance(actions, dict) else None
            if not isinstance(action, dict) or not isinstance(action.get("target"), str):
                raise DeviceFailure(
                    f"the system at {uri} has no Actions/{RESET_ACTION}/target: its power "
                    "cannot be switched through Redfish"
                )
            allowed = action.get("ResetType@Redfish.AllowableValues")
            self._targets[uri] = (action["target"], allowed if isinstance(allowed, list) else None)
        return self._targets[uri]

    # -- HTTPS

    def _get(self, path: str) -> dict[str, Any]:
        data = self._request("GET", path)
        if not isinstance(data, dict):
            raise DeviceFailure(f"GET {self.origin}{path}: the answer is not a JSON object")
        self._documents[path] = data
        return data

    def _request(self, method: str, path: str, body: object = None) -> Any:
        try:
            return self._client.request(method, path, body)
        except https.HttpsError as e:
            raise self._fence_error(method, e) from None

    def _fence_error(self, method: str, e: https.HttpsError) -> FenceError:
        """The adapter's failure in the words of this agent: what it means for a
        BMC, and which option to change."""
        if isinstance(e, https.StatusError):
            if e.status == 401:
                return LoginDenied(f"{e}: check username and password")
            if e.status == 403:
                return LoginDenied(
                    f"{e}: the account lacks the Redfish privilege "
                    f"{PRIVILEGE.get(method, 'ConfigureComponents')} for this"
                )
            message = _redfish_message(e.body)
            return DeviceFailure(f"{e}: {message}" if message else str(e))
        if isinstance(e, https.CertificateRejected):
            fix = (
                "check that ssl_ca_file holds the CA that signed the BMC's certificate"
                if e.ca_file
                else "give the CA that signed it with ssl_ca_file=<PEM file>"
            )
            return Unreachable(f"{e}; {fix}, or (insecure) skip the check with ssl_insecure=1")
        if isinstance(e, https.TimedOut):
            return Unreachable(f"{e} (login_timeout)")
        if isinstance(e, https.TransportError):
            return Unreachable(str(e))
        return DeviceFailure(str(e))


def _redfish_message(raw: bytes, limit: int = 200) -> str:
    """The human message of a Redfish error answer, on one line."""
    try:
        error = json.loads(raw).get("error", {})
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    messages = [
        str(info["Message"])
        for info in error.get("@Message.ExtendedInfo") or ()
        if isinstance(info, dict) and isinstance(info.get("Message"), str)
    ]
    fallback = error.get("message")
    text = "; ".join(messages) or (fallback if isinstance(fallback, str) else "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _odata_id(link: object, missing: str) -> str:
    """The path in a Redfish link ``{"@odata.id": path}``; else DeviceFailure(``missing``)."""
    uri = link.get("@odata.id") if isinstance(link, dict) else None
    if not isinstance(uri, str) or not uri.startswith("/"):
        raise DeviceFailure(missing)
    return uri


def _path(uri: str, option: str) -> str:
    if not uri.startswith("/") or any(c.isspace() for c in uri):
        raise FenceError(f"{option} {uri!r}: give a path on the BMC, such as /redfish/v1")
    return uri


OPTIONS = (
    *(option.replace(default=DEFAULT_PORT) if name == "ipport" else option for name, option in COMMON.items()),
    Option(
        "redfish_uri",
        "Base or starting Redfish URI",
        default=DEFAULT_ROOT,
        longdesc="Path of the Redfish service root on the BMC.",
    ),
    Option(
        "systems_uri",
        "Redfish Systems resource URI, i.e. /redfish/v1/Systems/System.Embedded.1",
        longdesc="Path of the ComputerSystem to fence. Without it the agent finds the system "
        "under the service root: the only one, or the one whose Id (or Name) is plug; "
        "on a BMC with several systems and neither option it names them and fails.",
    ),
    Option(
        "ssl_insecure",
        "Use SSL connection without verifying certificate",
        type="boolean",
        default=False,
        longdesc="Do not verify the BMC's TLS certificate (anyone on the path can then read "
        "the password and fake the answers). Prefer ssl_ca_file.",
    ),
    Option(
        "ssl_ca_file",
        "PEM file of the CA certificates to verify the BMC with",
        longdesc="Verify the BMC's TLS certificate against the CA certificate(s) in this PEM "
        "file instead of the system's trust store (for a BMC with a certificate from "
        "an in-house CA, or its own self-signed certificate).",
    ),
)

AGENT = FenceAgent(
    "fence_highlander_redfish",
    "Fence agent for Redfish BMCs",
    "fence_highlander_redfish powers a machine off, on or resets it through its BMC's Redfish "
    "API (ComputerSystem.Reset: ForceOff, On, ForceRestart) over HTTPS, and reads its "
    "PowerState to verify the result. The TLS certificate is verified unless ssl_insecure is "
    "set; ssl_ca_file names the CA to verify it with. Options follow fence_redfish's names.",
    vendor_url="https://www.dmtf.org/standards/redfish",
    options=OPTIONS,
    driver=RedfishDriver.from_options,
)
