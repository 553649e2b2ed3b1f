"""Container images: a wheelhouse from the lock, a local base image, builds and runs with Podman.

Stdlib only (plus `packaging`, which TensorFlow already needs), so the install script, the Makefile
and the tests can all use it.
"""
