"""Read-only shop-floor edge agent: poll machines, publish readings, raise maintenance alerts."""

__version__ = "0.1.0"
