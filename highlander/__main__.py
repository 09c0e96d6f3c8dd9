"""``python -m highlander``: the same as the ``highlander`` command."""

from highlander.cli import main

main()
