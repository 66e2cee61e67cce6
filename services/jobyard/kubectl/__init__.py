"""`kubectl jobyard`: a kubectl plugin that sees a jobyard release as queues.

It talks to the Kubernetes API with the operator's kubeconfig (or in-cluster config) and
RBAC: workloads from Deployments, ScaledObjects and HPAs; queue figures from the jobyard
API through the API server's service proxy. Entry point: :func:`jobyard.kubectl.main.main`.
"""
