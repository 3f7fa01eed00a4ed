"""agent.protocols."""
