"""agent.features."""
