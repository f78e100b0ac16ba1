"""certmint: a Kubernetes operator that runs private CAs and keeps workload certificates issued and renewed."""

__version__ = "0.1.0"
