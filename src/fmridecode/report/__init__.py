"""report stage of the workflow."""
