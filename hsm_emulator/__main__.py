"""``python -m hsm_emulator serve --state-dir DIR ...``: see ``server.main``."""

import sys

from .server import main

sys.exit(main())
