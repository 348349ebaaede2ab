"""``python -m flk_sdk``: the same CLI as the ``flk-sdk`` console script."""

import sys

from .cli import main

sys.exit(main())
