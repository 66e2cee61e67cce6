"""jobyard.jobs."""
