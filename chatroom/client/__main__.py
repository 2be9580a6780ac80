"""``python -m chatroom.client``: the same as ``chatroom-client``."""

import sys

from .cli import main

sys.exit(main())
