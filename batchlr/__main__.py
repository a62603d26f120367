"""``python -m batchlr``: the CLI, also how ``batchlr run --workers`` starts its workers."""

from batchlr.cli import main

main()
