"""jobyard.beat."""
