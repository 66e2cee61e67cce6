"""jobyard.api."""
