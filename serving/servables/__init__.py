"""What serves: one loaded model version (SavedModel or TFLite), its signatures, and its warm-up."""
