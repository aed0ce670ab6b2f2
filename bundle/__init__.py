"""EMIXER-CXR: the bundle's Python code, imported by the MONAI bundle configs as ``bundle.<module>``."""

__version__ = "0.5.0"
