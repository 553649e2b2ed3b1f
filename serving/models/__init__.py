"""What serves: servables, version lifecycle, batching, warm-up, and the in-process or remote backends."""
