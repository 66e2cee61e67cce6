"""The four workloads: drain, latency, HTTP enqueue, scale."""
