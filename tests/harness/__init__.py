"""Test harness: a Kubernetes API server emulator (no cluster exists here) and helpers that run the
real operator in-process against it and drive it with the real `kubernetes` client."""
