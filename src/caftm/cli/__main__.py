"""``python -m caftm.cli``: the ``caftm`` command."""

from caftm.cli import main

main()
