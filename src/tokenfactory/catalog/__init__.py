"""The factory's facts as data: GPUs, models, tier presets and energy defaults."""

from tokenfactory.catalog.load import Catalog, load_catalog
from tokenfactory.catalog.schema import PRECISIONS, Energy, Engine, Gpu, Model, Precision, Tier

__all__ = [
    "PRECISIONS",
    "Catalog",
    "Energy",
    "Engine",
    "Gpu",
    "Model",
    "Precision",
    "Tier",
    "load_catalog",
]
