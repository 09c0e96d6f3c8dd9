"""The fence agents: each module declares one as ``AGENT``."""
