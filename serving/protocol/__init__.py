"""TF Serving's wire formats: REST JSON and gRPC messages to and from tensors, and its errors."""
