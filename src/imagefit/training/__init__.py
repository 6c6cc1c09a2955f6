"""Training: `train`, a pipeline of stages (plan, setup, head, fine-tune, finish; refit and the range test),
the LightningModule and the recipe's callbacks. `imagefit.training.pipeline` holds the entry points."""
