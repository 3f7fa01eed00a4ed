"""hashpilot edge agent."""
