"""agent.transports."""
