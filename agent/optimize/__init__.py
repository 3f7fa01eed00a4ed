"""agent.optimize."""
