"""agent.inference."""
