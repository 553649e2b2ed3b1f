"""Privacy library, free of TFX: column policy, pseudonyms, generalizations, k-anonymity, fingerprints, audit log."""
