"""All Kubernetes API I/O of the operator lives in this package."""
