"""The release stage: a PhysioNet-ready folder with dataset card, license note and checksums
(:mod:`.physionet`), guarded by a PHI scan of everything it publishes (:mod:`.phi_scan`)."""
