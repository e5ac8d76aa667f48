"""``python -m helm_unittest`` (with ``tools`` on ``PYTHONPATH``)."""

import sys

from .cli import main

sys.exit(main())
