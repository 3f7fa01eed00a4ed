"""``python -m agent`` runs the agent CLI."""

import sys

from agent.cli import main

sys.exit(main())
