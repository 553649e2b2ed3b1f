"""Deployment tooling: container images built and run with Podman from a wheelhouse of the lock, and the
k8s/ manifests the CI/CD workflows render, check and edit through make.

The image modules (lock, wheelhouse, podman, images) use the standard library only (plus `packaging`,
which TensorFlow already needs), so the install script can import them before anything is installed.
"""
