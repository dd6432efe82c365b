"""robusteval: how vision backbones hold up when images shift."""

__version__ = "0.1.0"
