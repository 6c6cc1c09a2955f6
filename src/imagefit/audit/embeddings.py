"""Image embeddings (pooled backbone features), computed once and cached on disk by file content hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imagefit.config import ModelRecipe
from imagefit.data.cache import VectorStore, digest
from imagefit.data.preprocess import Preprocess
from imagefit.models import create_backbone, preprocess_for
from imagefit.models.digest import weights_digest
from imagefit.models.trained import load_trained
from imagefit.prediction.batches import map_batches
from imagefit.progress import transient_progress


def embedding_model(run_path: Path | None, *, median_side: int) -> tuple[torch.nn.Module, Preprocess, str]:
    """The run's backbone, or the default offline-pretrained one, with its preprocessing and a cache name.

    Without a run, images are embedded at 192 px, or 128 px when they are small (CIFAR's 32 px).
    """
    if run_path is not None:
        from imagefit.runs import load_run

        run = load_run(run_path)
        backbone = load_trained(run).backbone
        # Keyed by the weights themselves: a retrained run in the same folder gets new embeddings.
        return backbone, run.preprocess, f"run-{digest(weights_digest(backbone), run.preprocess.to_dict())}"
    recipe = ModelRecipe()
    backbone, source = create_backbone(recipe.model, pretrained=True)
    size = 128 if median_side <= 64 else min(192, preprocess_for(backbone).size)
    return backbone, preprocess_for(backbone, size), f"{recipe.model}-{source}-{size}"


def embed(
    locators: list[str],
    hashes: list[str],
    model: torch.nn.Module,
    preprocess: Preprocess,
    *,
    cache_name: str,
    cache_dir: Path | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """L2-normalised embeddings [N, D] in the order of `locators`; cached vectors are reused."""
    store = VectorStore(cache_dir)
    cached = store.get(f"embeddings-{cache_name}", hashes)
    missing = [(loc, file_hash) for loc, file_hash in zip(locators, hashes, strict=True) if file_hash not in cached]
    if missing:
        model = model.eval().to(memory_format=torch.channels_last)

        def features(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                images = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
                return model(images).float().numpy()

        with transient_progress() as progress:
            task = progress.add_task("embedding images", total=len(missing))
            paths, vectors, _ = map_batches(
                features,
                preprocess,
                [loc for loc, _ in missing],
                batch_size=batch_size,
                progress=lambda count: progress.advance(task, count),
            )
        by_path = dict(missing)
        computed = {by_path[path]: vector for path, vector in zip(paths, vectors, strict=True)}
        store.put(f"embeddings-{cache_name}", computed, kind="embeddings")
        cached.update(computed)
    matrix = np.stack([cached[file_hash] for file_hash in hashes]).astype(np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
