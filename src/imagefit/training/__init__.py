"""Training: the LightningModule, the recipe callbacks and `train`, which writes a run folder."""

from imagefit.training.fit import train

__all__ = ["train"]
