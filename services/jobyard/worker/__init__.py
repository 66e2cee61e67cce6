"""The worker: `jobyard worker --queue NAME`."""
