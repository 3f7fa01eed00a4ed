"""hashpilot central trainer and distributor."""
