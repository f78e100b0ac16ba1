"""Reconcilers that join the pure core to the Kubernetes I/O layer."""
