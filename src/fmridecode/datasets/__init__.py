"""datasets stage of the workflow."""
