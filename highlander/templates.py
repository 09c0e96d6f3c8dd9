"""Find and render the files in ``templates/``.

``templates/`` is the single source of every rendered configuration file:
the CLI, the lab and the Ansible roles all render the same templates, so a
fix in one place reaches every way of building a cluster.

An installed highlander finds them under ``<prefix>/share/highlander/templates``
(setup.cfg installs them there as data files). When the package is imported
straight from a source checkout, that checkout's ``templates/`` is used, so
what runs always matches the code that renders it.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

TEMPLATE_SUBDIR = Path("share", "highlander", "templates")


class TemplateNotFound(LookupError):
    """No template directory, or no template of that name, exists."""


def installed_template_dir() -> Path:
    """Where pip put the templates for the running interpreter's prefix."""
    return Path(sysconfig.get_path("data")) / TEMPLATE_SUBDIR


def checkout_template_dir() -> Path | None:
    """The ``templates/`` of the source checkout this package was imported from.

    Only a real checkout counts (``setup.cfg`` next to the package): an
    unrelated ``templates`` folder in site-packages must never be picked up.
    """
    root = Path(__file__).resolve().parent.parent
    candidate = root / "templates"
    if (root / "setup.cfg").is_file() and candidate.is_dir():
        return candidate
    return None


def template_dirs() -> list[Path]:
    """Directories searched for templates, first match wins."""
    dirs: list[Path] = []
    checkout = checkout_template_dir()
    if checkout is not None:
        dirs.append(checkout)
    installed = installed_template_dir()
    if installed.is_dir():
        dirs.append(installed)
    if not dirs:
        raise TemplateNotFound(f"no template directory: neither {installed} nor a source checkout's templates/")
    return dirs


def find_template(name: str) -> Path:
    """The file that :func:`render` would use for ``name``."""
    for directory in template_dirs():
        path = directory / name
        if path.is_file():
            return path
    raise TemplateNotFound(f"template {name!r} not found in {template_dirs()}")


def render_template(name: str, /, **context: Any) -> str:
    """Render template ``name`` with ``context``.

    Undefined variables are errors rather than empty strings: a config file
    with a silently missing value is worse than no file.
    """
    import jinja2  # only the commands that render pay for importing jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs()]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateNotFound(f"template {name!r} not found in {template_dirs()}") from exc
    return template.render(**context)
