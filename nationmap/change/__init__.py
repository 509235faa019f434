"""Land change that needs evidence: a month's LULC map against the class each pixel was confirmed in."""
