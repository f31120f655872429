"""The package version (one place: the package, the builder and the manifest read it)."""

__version__ = "0.1.0"
