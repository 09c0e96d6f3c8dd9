"""Reading an agent's instance parameters from ``OCF_RESKEY_*``.

Pure: takes the environment as a mapping, returns values and problems, so
the rules (empty means unset, every problem reported at once) are tested
without a cluster.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping

    from highlander.ocf.spec import Agent

# Set by Pacemaker itself, never by the operator.
RESERVED_PREFIXES = ("OCF_RESKEY_CRM_meta_", "OCF_RESKEY_crm_feature_set")


def parse_parameters(agent: Agent, environ: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """Typed values for every declared parameter, and every problem found.

    An empty value counts as unset, as in the stock shell agents. A missing
    required or invalid value is reported and replaced by the default (None
    for required parameters), so a lenient caller can still act on the rest.
    """
    values: dict[str, object] = {}
    problems: list[str] = []
    for parameter in agent.parameters:
        raw = environ.get(parameter.env_name, "")
        if raw == "":
            if parameter.required:
                problems.append(f"required parameter '{parameter.name}' is not set")
            values[parameter.name] = parameter.default
            continue
        try:
            values[parameter.name] = parameter.parse(raw)
        except ValueError as exc:
            problems.append(str(exc))
            values[parameter.name] = parameter.default
    return values, problems


def unknown_parameters(agent: Agent, environ: Mapping[str, str]) -> list[str]:
    """Names passed as ``OCF_RESKEY_*`` that the agent does not declare (typos)."""
    declared = {p.env_name for p in agent.parameters}
    return sorted(
        key[len("OCF_RESKEY_") :]
        for key in environ
        if key.startswith("OCF_RESKEY_") and not key.startswith(RESERVED_PREFIXES) and key not in declared
    )
