"""jobyard: Kubernetes-native background jobs on Celery and Redis."""

__version__ = "0.1.0"
