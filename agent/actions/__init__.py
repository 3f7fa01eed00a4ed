"""agent.actions."""
