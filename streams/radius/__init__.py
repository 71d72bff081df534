"""RADIUS processors: the subscriber/NAS replica the gateway answers from."""
