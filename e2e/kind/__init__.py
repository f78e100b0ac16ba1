"""The kind provider of the e2e suite (provider.py) and its one-command runner (run.sh)."""
