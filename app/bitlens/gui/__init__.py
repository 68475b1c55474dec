"""Qt views over the core: the Bitlens window."""
