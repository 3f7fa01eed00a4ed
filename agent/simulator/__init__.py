"""agent.simulator."""
