"""Key lifecycle, verification, caches and the change feed."""
