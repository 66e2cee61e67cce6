"""jobyard.observability."""
