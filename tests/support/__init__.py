"""Shared test helpers: real Redis servers and real jobyard processes."""
