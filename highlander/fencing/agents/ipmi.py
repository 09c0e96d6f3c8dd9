"""fence_highlander_ipmi: power fencing through a BMC's IPMI 2.0 (RMCP+) interface.

Option names and spellings are fence_ipmilan's, so a stonith device moves
from one agent to the other by changing the agent name. The differences:

- ``lanplus`` is on by default (IPMI 2.0); fence_ipmilan defaults to IPMI 1.5.
  IPMI 1.5 (``lanplus=0``) is refused: its authentication is weak, and with it
  fence_ipmilan's ``auth`` option, which this agent does not have.
- ``cipher`` is 3 (HMAC-SHA1, AES-128) or 17 (HMAC-SHA256, AES-128), used
  exactly as given; unset, 17 is tried first and 3 if the BMC refuses it.
  Other suites (0 has no authentication at all) are not offered.
- ``power_wait`` defaults to 0 s (fence_ipmilan: 2 s): the power state is read
  back from the BMC until it shows the change, so a fixed wait buys nothing.
- No ipmitool: the driver speaks IPMI itself (pyghmi), keeps one session for
  the whole action and never puts the password or the Kg key on a command
  line.

Everything that touches pyghmi's private session code is in
:mod:`highlander.fencing.agents.pyghmi_shim`, with the pyghmi versions it is
proven for; the driver imports pyghmi (through the shim) only when it is
built for an action, so meta-data, manpage and bad input never pay for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from highlander.fencing import address
from highlander.fencing.agents import pyghmi_shim
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

T = TypeVar("T")

DEFAULT_PORT = 623
PRIVILEGE_LEVELS = {"callback": 1, "user": 2, "operator": 3, "administrator": 4}
CIPHER_SUITES = ("3", "17")

# IPMI chassis commands (netfn 0x00, IPMI 2.0 section 28)
NETFN_CHASSIS = 0x00
GET_CHASSIS_STATUS = 0x01
CHASSIS_CONTROL = 0x02
POWER_DOWN, POWER_UP, POWER_CYCLE = 0x00, 0x01, 0x02

# What pyghmi reports when a BMC never answered.
_NO_ANSWER = {"None", "timeout", "Session no longer connected", ""}


def _options() -> list[Option]:
    common = dict(COMMON)
    common["ipport"] = common["ipport"].replace(default=DEFAULT_PORT)
    common["login_timeout"] = common["login_timeout"].replace(
        longdesc="Wait X seconds for the BMC to answer the login, and then each command "
        "(pyghmi retransmits a lost packet within that time). A BMC that stays silent "
        "fails the action."
    )
    own = [
        Option(
            "lanplus",
            "Use Lanplus (IPMI 2.0), the default; IPMI 1.5 is not supported",
            short="P",
            type="boolean",
            default=True,
            longdesc="IPMI 2.0 (RMCP+), on by default (fence_ipmilan defaults to off). "
            "IPMI 1.5 (lanplus=0) is refused: this agent speaks IPMI 2.0 only, "
            "so it has no 'auth' option either.",
        ),
        Option(
            "cipher",
            "Ciphersuite to use (same as ipmitool -C parameter)",
            short="C",
            type="select",
            choices=CIPHER_SUITES,
            longdesc="RMCP+ cipher suite: 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) or "
            "17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128), used exactly as "
            "given. Unset: 17, or 3 if the BMC refuses 17. Suites without "
            "authentication or encryption are never used.",
        ),
        Option(
            "privlvl",
            "Privilege level on IPMI device",
            short="L",
            type="select",
            choices=tuple(PRIVILEGE_LEVELS),
            default="administrator",
            metavar="level",
            longdesc="Privilege level of the session. Power control needs operator or administrator.",
        ),
        Option(
            "hexadecimal_kg",
            "Hexadecimal-encoded Kg key for IPMIv2 authentication",
            long="hexadecimal-kg",
            secret=True,
            metavar="key",
            longdesc="The BMC key (Kg), hexadecimal, at most 20 bytes. Unset: the password "
            "is used as Kg, as IPMI 2.0 specifies. Never logged.",
        ),
    ]
    order = ("action", "ip", "ipport", "username", "password", "password_script")
    head = [common.pop(name) for name in order]
    return head + own + list(common.values())


class IpmiDriver(PowerDriver):
    """One BMC over IPMI 2.0, through one RMCP+ session kept for the whole action."""

    def __init__(
        self,
        host: str,
        *,
        port: int = DEFAULT_PORT,
        username: str = "",
        password: str = "",
        privilege: str = "administrator",
        cipher: str | None = None,
        kg: bytes | None = None,
        timeout: float = 5.0,
    ) -> None:
        if privilege not in PRIVILEGE_LEVELS:
            raise FenceError(f"privlvl must be one of {', '.join(PRIVILEGE_LEVELS)}")
        if cipher is not None and cipher not in CIPHER_SUITES:
            raise FenceError(f"cipher {cipher} is not supported: use 3 or 17")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.privilege = privilege
        self.cipher = cipher
        self._kg = kg
        self.timeout = timeout
        self._session: Any = None

    def __repr__(self) -> str:  # never the password or the Kg
        return f"IpmiDriver({self.host}:{self.port}, user={self.username!r})"

    @property
    def where(self) -> str:
        return address.join(self.host, self.port)

    # -- bounded calls -----------------------------------------------------

    def _bounded(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call`` for at most ``timeout`` seconds, or raise :class:`_Overran`.

        pyghmi bounds nothing the way a fence agent needs: a login to a
        silent address gives up after about 6 s, a command after up to half a
        minute of retransmissions. The call runs in a daemon thread; one that
        overruns is left behind (it ends when pyghmi gives up) and its
        session is never used again.
        """
        result: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(call())
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        worker = threading.Thread(target=run, name=f"ipmi {what}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise _Overran(what)
        if error:
            raise error[0]
        return result[0]

    # -- PowerDriver -------------------------------------------------------

    def connect(self) -> None:
        """Open the RMCP+ session (IPMI 2.0); LoginDenied or Unreachable if not."""
        silent = Unreachable(f"no answer from the BMC at {self.where} within {self.timeout:g} s")
        try:
            try:
                self._session = self._bounded("the login", self._login)
            except AttributeError:
                # pyghmi's logout path can mark a session broken without the
                # error it keeps beside that flag, and a login racing with it
                # then fails inside pyghmi: one more login on a fresh session
                # gets the BMC's real answer.
                pyghmi_shim.forget_logins(self.cipher, self.host, self.port)
                self._session = self._bounded("the login", self._login)
        except _Overran:
            # The login goes on in the background; a later connect must not join it.
            pyghmi_shim.forget_logins(self.cipher, self.host, self.port)
            raise silent from None
        except FenceError:
            raise
        except OSError as exc:
            raise Unreachable(f"cannot reach the BMC at {self.where}: {exc.strerror or exc}") from None
        except Exception as exc:
            message = _message(exc)
            if message in _NO_ANSWER:
                raise silent from None
            if "transmit" in message:  # pyghmi cannot resolve or send to the address
                raise Unreachable(f"cannot reach the BMC at {self.where}: {message}") from None
            hint = ""
            if "algorithm" in message or "Cipher suite" in message:
                hint = f" (cipher suite {self.cipher or '17 or 3'} not supported by the BMC?)"
            raise LoginDenied(
                f"the BMC at {self.where} refused the login of user {self.username!r}"
                f" at privilege {self.privilege}: {message}{hint}"
            ) from None

    def _login(self) -> Any:
        return pyghmi_shim.login(
            self.cipher,
            host=self.host,
            port=self.port,
            username=self.username,
            password=self._password,
            kg=self._kg,
            privilege_level=PRIVILEGE_LEVELS[self.privilege],
        )

    def _command(self, what: str, command: int, data: tuple[int, ...] = ()) -> list[int]:
        """One chassis command in the open session.

        A session that broke (the BMC restarted, forgot it) is replaced by a
        new login and the command sent once more; lost packets are pyghmi's
        to retransmit. A BMC silent for ``timeout`` seconds is Unreachable,
        and the next command logs in anew: BMCs are often busy for a few
        seconds around a power change.
        """
        for attempt in (1, 2):
            if self._session is None or pyghmi_shim.is_broken(self._session):
                self.connect()
            session = self._session

            def send(session: Any = session) -> Any:
                return session.raw_command(netfn=NETFN_CHASSIS, command=command, data=data)

            try:
                response = self._bounded(what, send)
            except _Overran:
                pyghmi_shim.discard(session)
                self._session = None
                raise Unreachable(
                    f"no answer from the BMC at {self.where} to {what} within {self.timeout:g} s"
                ) from None
            except Exception as exc:
                if attempt == 1:
                    self._session = None
                    continue
                raise DeviceFailure(f"{what} failed at the BMC at {self.where}: {_message(exc)}") from None
            if response is None:
                raise DeviceFailure(f"{what}: no answer from the BMC at {self.where}")
            code = response.get("code", 0)
            error = response.get("error")
            if error == "timeout" or code == 0xFFFF:  # pyghmi gave up retrying
                raise Unreachable(f"no answer from the BMC at {self.where} to {what}")
            if error or code:
                if not error:
                    error = pyghmi_shim.completion_code_text(response)
                detail = f"{error} (completion code 0x{code:02x})" if code else str(error)
                raise DeviceFailure(f"the BMC at {self.where} refused {what}: {detail}")
            return list(response.get("data", ()))
        raise AssertionError("unreachable")

    def power_status(self, plug: str | None) -> str:
        data = self._command("get chassis status", GET_CHASSIS_STATUS)
        if not data:
            raise DeviceFailure(f"the BMC at {self.where} sent an empty chassis status")
        return ON if data[0] & 0x01 else OFF

    def set_power(self, plug: str | None, state: str) -> None:
        control = {ON: POWER_UP, OFF: POWER_DOWN}[state]
        self._command(f"chassis power {state}", CHASSIS_CONTROL, (control,))

    def reset(self, plug: str | None) -> None:
        """A power cycle (what fence_ipmilan's --method cycle sends): off, then on
        by the BMC itself; the off state is never seen by the agent."""
        self._command("chassis power cycle", CHASSIS_CONTROL, (POWER_CYCLE,))

    def plugs(self) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        """Close the session: a Close Session request, sent without waiting for
        the answer (a BMC has few session slots). Never raises."""
        session, self._session = self._session, None
        if session is None or pyghmi_shim.is_broken(session):
            return
        try:
            self._bounded("the logout", session.logout)
        except BaseException:
            pass


class _Overran(Exception):
    """A pyghmi call that did not return within the driver's timeout."""


def _message(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else str(exc).strip()


def make_driver(options: Mapping[str, object]) -> IpmiDriver:
    """The driver for the parsed options; refuses what it cannot do before any traffic
    (an unproven pyghmi included)."""
    if options.get("lanplus") is False:
        raise FenceError("lanplus=0 (IPMI 1.5) is not supported: this agent speaks IPMI 2.0 (RMCP+) only")
    kg = None
    hexadecimal_kg = options.get("hexadecimal_kg")
    if hexadecimal_kg:
        text = str(hexadecimal_kg).strip()
        if text.lower().startswith("0x"):
            text = text[2:]
        try:
            kg = bytes.fromhex(text)
        except ValueError:
            raise FenceError("hexadecimal_kg is not a hexadecimal string") from None
        if not kg or len(kg) > 20:
            raise FenceError("hexadecimal_kg must be 1 to 20 bytes (2 to 40 hexadecimal digits)")
    cipher = options.get("cipher")
    pyghmi_shim.session_module()
    return IpmiDriver(
        str(options["ip"]),
        port=int(options.get("ipport") or DEFAULT_PORT),  # type: ignore[call-overload]
        username=str(options.get("username") or ""),
        password=str(options.get("password") or ""),
        privilege=str(options.get("privlvl") or "administrator"),
        cipher=None if cipher in (None, "") else str(cipher),
        kg=kg,
        timeout=float(options.get("login_timeout") or 5),  # type: ignore[arg-type]
    )


AGENT = FenceAgent(
    "fence_highlander_ipmi",
    "Fence agent for IPMI 2.0 (RMCP+) BMCs",
    "fence_highlander_ipmi is a power fencing agent for machines with an IPMI 2.0 BMC. It "
    "speaks RMCP+ itself (no ipmitool), keeps one session for the whole action and reads the "
    "chassis power back until it shows the change, so a verified off takes a few round trips. "
    "Its options are fence_ipmilan's; lanplus is on by default and IPMI 1.5 is not supported.",
    vendor_url="https://www.intel.com/content/www/us/en/products/docs/servers/ipmi/ipmi-home.html",
    options=_options(),
    driver=make_driver,
)

if __name__ == "__main__":
    AGENT.run()
