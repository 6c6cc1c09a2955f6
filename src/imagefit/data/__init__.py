"""Data: find labelled images, check them, split them, decode and augment them, and load batches."""

from imagefit.data.inventory import Inventory, scan
from imagefit.data.preprocess import Preprocess
from imagefit.data.sources import Sample, find_samples
from imagefit.data.split import assign_splits, read_split, write_split

__all__ = ["Inventory", "Preprocess", "Sample", "assign_splits", "find_samples", "read_split", "scan", "write_split"]
