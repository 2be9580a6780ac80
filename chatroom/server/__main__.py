"""``python -m chatroom.server``: the same as ``chatroom-server``."""

import sys

from .operations.cli import main

sys.exit(main())
