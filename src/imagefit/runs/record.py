"""config.json of a run folder as a record: written whole once, then changed only through named updates.

Each update reads the file, sets its own fields and writes it back atomically, so no other module
reads, modifies and writes config.json, and the fields a stage adds are named in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagefit.files import write_json
from imagefit.runs.files import RunFiles, read_json


@dataclass(frozen=True)
class ConfigRecord:
    """The config.json of the run folder at `files`."""

    files: RunFiles

    def exists(self) -> bool:
        return self.files.config.exists()

    def values(self) -> dict[str, Any]:
        """The fields as written now."""
        return read_json(self.files.config)

    def has(self, key: str) -> bool:
        return self.exists() and key in self.values()

    def create(self, values: dict[str, Any]) -> None:
        """The first config.json of a new run: data, recipe, preprocessing, weights source, imbalance, task."""
        write_json(self.files.config, values)

    def _update(self, **fields: Any) -> None:
        write_json(self.files.config, {**self.values(), **fields})

    def set_recipe(self, recipe: dict) -> None:
        """The recipe re-planned (epochs that fit the time left)."""
        self._update(recipe=recipe)

    def set_lr_find(self, recipe: dict, facts: dict) -> None:
        """--lr auto: the range test's facts and the recipe at its suggested rate."""
        self._update(recipe=recipe, lr_find=facts)

    def set_measured(self, facts: dict) -> None:
        """What the data showed before fine-tuning: the majority rate, the raw-pixel baseline, the head (on val)."""
        self._update(measured=facts)

    def set_head_fit(self, facts: dict) -> None:
        """The head solved on cached features against the head its epochs trained (val loss, which was kept)."""
        self._update(head_fit=facts)

    def set_probe(self, recipe: dict, facts: dict) -> None:
        """Far data: the fine-tuning rate probe's figures, and the recipe at the rate it chose."""
        self._update(recipe=recipe, probe=facts)

    def set_soup(self, facts: dict) -> None:
        """The epochs the greedy soup averaged, and its val loss against the kept epoch's."""
        self._update(soup=facts)

    def set_inference(self, inference: dict, candidates: list[dict], adjustment: dict | None = None) -> None:
        """The prediction settings chosen on val (size, views, temperature), the candidates measured, and the
        logit shift for imbalanced classes chosen with them (evaluation.priors; added at every load)."""
        shift = {"prior_adjustment": adjustment} if adjustment else {}
        self._update(inference=inference, inference_candidates=candidates, **shift)

    def set_adjustment(self, adjustment: dict) -> None:
        """The logit shift for imbalanced classes alone (the prediction settings not tuned)."""
        self._update(prior_adjustment=adjustment)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """A multi-label run's per-label thresholds, chosen on val."""
        self._update(thresholds=thresholds)

    def set_unknown(self, facts: dict) -> None:
        """The unknown index's file, neighbour and threshold."""
        self._update(unknown=facts)

    def add_class(self, facts: dict) -> None:
        """`imagefit add-class`: the class added without retraining. Its weights were saved from the loaded model,
        whose bias already holds the logit shift for imbalance: the shift is kept as a fact, not applied again."""
        values = self.values()
        shift = values.pop("prior_adjustment", None)
        baked = {"prior_adjustment_in_weights": shift} if shift else {}
        write_json(self.files.config, {**values, "added_classes": [*values.get("added_classes", []), facts], **baked})

    def set_students(self, facts: dict) -> None:
        """`--unlabelled`: the chain of students this run started has ended (its rounds, the run kept)."""
        self._update(students=facts)
