"""Training: the LightningModule, the recipe callbacks and `train`, which writes a run folder."""

from imagefit.train.fit import train

__all__ = ["train"]
