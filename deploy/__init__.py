"""Deployment tooling the CI/CD workflows call through make: render, check and edit k8s/ manifests."""
