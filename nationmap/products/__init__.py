"""Map products: per-cell COGs, national mosaics, STAC, quicklooks (pure core, no Ray)."""
