"""Test helper: a training run in which every process saves its model's weights at known points.

    python tests/rank_weights.py OUT DATA OPTIONS_JSON

Runs `imagefit.train(DATA, **OPTIONS)` with a callback that saves each process's weights to
OUT/start-rank-N.pt (before the first epoch), OUT/epoch-E-rank-N.pt (after each epoch) and
OUT/end-rank-N.pt, and how Lightning found its rank to OUT/cluster-rank-N.json. Lightning's DDP launcher
starts the other processes with the same command line.
"""

import json
import sys
from pathlib import Path

import lightning as L
import torch

import imagefit


class SaveWeights(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> None:
        weights = {key: value.detach().cpu().clone() for key, value in pl_module.model.state_dict().items()}
        torch.save(weights, self.out / f"{name}-rank-{trainer.global_rank}.pt")

    def on_train_start(self, trainer, pl_module):
        self._save(trainer, pl_module, "start")
        cluster = getattr(trainer.strategy, "cluster_environment", None)  # how Lightning found its ranks
        facts = {
            "cluster": type(cluster).__name__,
            "global_rank": trainer.global_rank,
            "node_rank": trainer.node_rank,
            "world_size": trainer.world_size,
        }
        (self.out / f"cluster-rank-{trainer.global_rank}.json").write_text(json.dumps(facts))

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer, pl_module, f"epoch-{trainer.current_epoch}")

    def on_train_end(self, trainer, pl_module):
        self._save(trainer, pl_module, "end")


def main() -> None:
    out, data, options = sys.argv[1:]
    imagefit.train(data, report=False, callbacks=[SaveWeights(Path(out))], **json.loads(options))


if __name__ == "__main__":
    main()
