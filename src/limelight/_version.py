"""The package version, in a leaf module (the plugin registry reads it without importing
the package's public face)."""

__version__ = "0.1.0"
