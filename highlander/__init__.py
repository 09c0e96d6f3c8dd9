"""highlander: keep a service that must never run twice highly available.

Nothing is imported here: the OCF agents import this package on every
monitor, and their start-up time is budgeted.

For the same reason the modules on an OCF agent's start-up path (agents/,
ocf/, adapters/process.py) write ``TYPE_CHECKING = False`` where others
write ``from typing import TYPE_CHECKING``: the constant is all they need,
and importing typing would cost every monitor a few milliseconds.
tests/unit/test_agent_imports.py keeps that path free of typing.
"""

__version__ = "0.1.0"
