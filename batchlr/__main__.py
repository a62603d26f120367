"""``python -m batchlr``: the CLI, also how ``batchlr run --workers`` starts its workers."""

import os
import sys

# `python -m` puts the working directory first on sys.path, where a torch.py or yaml.py lying
# there would replace the real module in every command. batchlr is imported by now; the
# working directory goes first on the path only while a --model module imports, and last
# after it (objectives.models).
if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from batchlr.cli import main

main()
