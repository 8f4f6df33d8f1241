"""The package version: the one place it is written (pyproject.toml reads it from here).

Kept equal to the Swift package's version (FI Scale 0.1.0)."""
__version__ = "0.1.0"
