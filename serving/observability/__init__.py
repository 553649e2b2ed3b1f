"""What the server tells its operators: Prometheus metrics, input drift, the access audit."""
