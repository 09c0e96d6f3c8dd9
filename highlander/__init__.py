"""highlander: keep a service that must never run twice highly available.

Nothing is imported here: the OCF agents import this package on every
monitor, and their start-up time is budgeted.
"""

__version__ = "0.1.0"
