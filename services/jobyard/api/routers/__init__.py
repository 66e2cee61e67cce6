"""jobyard.api.routers."""
