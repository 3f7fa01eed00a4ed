"""Subcommands of ``hashpilot-agent``, one module each."""
