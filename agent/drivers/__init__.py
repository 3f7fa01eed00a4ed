"""agent.drivers."""
