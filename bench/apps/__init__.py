"""What each system's worker processes import: a no-op job and a latency stamp job.

These modules read `BENCH_REDIS_URL` (and `BENCH_STAMP_DIR` for stamps) from the
environment the harness gives the worker.
"""
