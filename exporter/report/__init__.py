"""What a run shows and leaves: progress, the reporter, registry.json, doit status, the
gallery."""
