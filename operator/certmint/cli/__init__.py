"""The ``certmint`` command-line tool (also ``kubectl certmint``): read certmint's objects and Secrets, renew,
convert cert-manager manifests.

Layout: ``main`` parses arguments and maps failures to exit codes, ``kubeconfig`` finds the cluster and the
credentials, ``api`` makes every API call, ``render`` turns what was read into reports and text without any I/O,
``convert`` turns cert-manager manifests into certmint ones (pure, plain dicts), ``sources`` reads manifests from
files and stdin.
The operator never imports this package (an import-linter contract), and this package never imports kopf or the
operator's controller: it runs with the package's runtime dependencies only.
"""
