"""``python -m agent.simulator``: the same as ``hashpilot-sim``."""

from __future__ import annotations

import sys

from agent.simulator.cli import main

sys.exit(main())
