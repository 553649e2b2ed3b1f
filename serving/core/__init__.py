"""Version lifecycle, as TF Serving's core/: the source (version folders), the version policy,
the loader and the manager."""
