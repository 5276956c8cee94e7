"""Reports for the PI protection officer built from policy and records."""
