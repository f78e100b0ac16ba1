"""Pure X.509 machinery: keys, CSRs, signing, inspection. No Kubernetes imports."""
