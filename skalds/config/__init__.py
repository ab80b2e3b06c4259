"""Configuration objects; the environment and ``.env`` are read here and nowhere else."""
