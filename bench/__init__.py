"""Reproducible benchmarks of jobyard against bare Celery, RQ, arq, dramatiq and Flower.

Run with `python -m bench` (`make bench`); see `bench/README.md`.
"""
