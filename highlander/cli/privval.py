"""``highlander privval``: the CometBFT remote signer behind the register."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("privval")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    required=True,
    help="The signer's privval.toml.",
)
@click.option(
    "--promote",
    is_flag=True,
    help="Promote in the sign-state register at start and sign; without it, answer PubKey/Ping only.",
)
def privval(config_path: Path, promote: bool) -> None:
    """Sign for CometBFT nodes (privval protocol), checking every signature
    against the sign-state register before it is made."""
    from highlander.commands.privval import PrivvalError, serve
    from highlander.privval.config import ConfigError
    from highlander.privval.key import KeyFileError
    from highlander.privval.state import StateError

    try:
        serve(config_path, promote)
    except (ConfigError, KeyFileError, StateError, PrivvalError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
