"""Privacy at ingestion: column policy, pseudonyms, generalizations, k-anonymity, fingerprints (no TFX)."""
