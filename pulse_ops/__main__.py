"""``python -m pulse_ops``: the same as the ``pulse-ops`` command."""

import sys

from pulse_ops.cli import main

sys.exit(main())
