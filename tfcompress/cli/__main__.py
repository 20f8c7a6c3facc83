"""``python -m tfcompress.cli``: the ``tfcompress`` command."""

from tfcompress.cli.main import main

main()
