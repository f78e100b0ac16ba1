"""Pure lifecycle logic: typed specs, policy, renewal maths, issuance decisions. No Kubernetes imports."""
