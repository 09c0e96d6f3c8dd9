"""OCF exit codes (resource-agent API 1.1) and the error that carries one.

Plain integers rather than an ``IntEnum``: ``enum`` is not loaded at
interpreter start-up and the monitor path is budgeted.
"""

SUCCESS = 0
ERR_GENERIC = 1
ERR_ARGS = 2
ERR_UNIMPLEMENTED = 3
ERR_PERM = 4
ERR_INSTALLED = 5
ERR_CONFIGURED = 6
NOT_RUNNING = 7
RUNNING_PROMOTED = 8
FAILED_PROMOTED = 9
DEGRADED = 190
DEGRADED_PROMOTED = 191

NAMES = {
    SUCCESS: "OCF_SUCCESS",
    ERR_GENERIC: "OCF_ERR_GENERIC",
    ERR_ARGS: "OCF_ERR_ARGS",
    ERR_UNIMPLEMENTED: "OCF_ERR_UNIMPLEMENTED",
    ERR_PERM: "OCF_ERR_PERM",
    ERR_INSTALLED: "OCF_ERR_INSTALLED",
    ERR_CONFIGURED: "OCF_ERR_CONFIGURED",
    NOT_RUNNING: "OCF_NOT_RUNNING",
    RUNNING_PROMOTED: "OCF_RUNNING_PROMOTED",
    FAILED_PROMOTED: "OCF_FAILED_PROMOTED",
    DEGRADED: "OCF_DEGRADED",
    DEGRADED_PROMOTED: "OCF_DEGRADED_PROMOTED",
}


def name(code: int) -> str:
    """The OCF name of an exit code, for logs and messages."""
    return NAMES.get(code, f"exit code {code}")


class OCFError(Exception):
    """Ends an action with ``code``; ``reason`` becomes the exit reason.

    Raised anywhere below an action handler so that the handler code reads
    as the success path, and every failure reaches Pacemaker with a reason.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{name(self.code)}: {self.reason}"
