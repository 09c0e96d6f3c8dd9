"""STONITH fence agents in the fence-agents calling convention.

An agent is declared once (:mod:`highlander.fencing.spec`): its options and a
driver for its kind of device. Option parsing (stdin key=value lines and the
equivalent command line, current and deprecated names), the meta-data XML,
the man page and the action logic (on, off, reboot, status, monitor, list,
list-status, validate-all) derive from that declaration. Drivers
(:mod:`highlander.fencing.driver`) only talk to the device.
"""
