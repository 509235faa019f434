"""Readers, catalog, regions, synthetic world and dataset preparation (pure core, no Ray)."""
