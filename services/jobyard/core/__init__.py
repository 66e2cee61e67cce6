"""jobyard.core."""
