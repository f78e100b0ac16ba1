"""Benchmarks: issuance throughput, memory at scale, restart, renewal precision, RSA (``python -m tests.bench.run``)."""
