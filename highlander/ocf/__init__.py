"""The OCF resource-agent framework.

An agent is declared once (:mod:`highlander.ocf.spec`); its meta-data XML,
parameter parsing, validate-all and dispatch derive from that declaration.
Pacemaker runs ``monitor`` every few seconds, so the modules on that path
import nothing beyond what the interpreter already loaded at start-up.
"""
