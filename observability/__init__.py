"""Watching the served models: dashboard definition, Grafana JSON, the static dashboard page, the local stack."""
