"""tokenfactory: run an AI inference fleet as a token factory."""

__version__ = "0.1.0"
