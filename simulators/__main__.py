"""``python -m simulators``: the same as ``edge-sim``."""

import sys

from simulators.cli import main

sys.exit(main())
