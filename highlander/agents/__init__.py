"""The OCF resource agents: each module declares one agent as ``AGENT``."""
