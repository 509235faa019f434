"""nationmap: national LULC and water maps of Japan from ALOS-2 L-band SAR."""

__version__ = "0.1.0"
