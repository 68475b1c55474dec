from __future__ import annotations

import sys

from bitlens.cli import main

sys.exit(main())
