import csv
import json

import pytest
import torch
from conftest import TINY, make_class_folders, zip_folder
from safetensors.torch import load_file

import imagefit
from imagefit.errors import UserError
from imagefit.models.trained import load_trained

RUN_FILES = {"model.safetensors", "config.json", "labels.json", "split.csv", "history.csv", "metrics.json", "env.json"}


def _history(run_dir):
    with (run_dir / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_run_folder_has_every_file_and_learns(tiny_run):
    assert RUN_FILES <= {p.name for p in tiny_run.iterdir()}
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] >= 0.9, "red vs blue is trivially learnable"
    assert set(metrics["val"]["per_class"]) == {"red", "blue"}
    assert 0 <= metrics["val"]["ece_cross_fitted"] <= 1, "val ECE out of sample too"
    rows = _history(tiny_run)
    assert [r["phase"] for r in rows] == ["1", "2", "2"]
    assert all(float(r["seconds"]) > 0 for r in rows)
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["recipe"]["schedule"]["epochs"] == 3 and config["preprocess"]["size"] == 32


def test_run_loads_back_and_reproduces_its_validation_accuracy(tiny_run):
    run = imagefit.load_run(tiny_run)
    val = [s for s in run.split() if s.split == "val"]
    predicted = imagefit.predict(run.path, [s.path for s in val]).labels
    accuracy = sum(p == s.label for p, s in zip(predicted, val, strict=True)) / len(val)
    assert accuracy == pytest.approx(run.metrics["val"]["accuracy"])


def _pickled(path) -> bool:
    """Whether a file is a pickle, or a torch.save archive (a zip holding one)."""
    import zipfile

    head = path.read_bytes()[:2]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # pickle protocol 2-5
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    return False


def test_run_folder_holds_no_pickles_outside_checkpoints(tiny_run, tmp_path):
    written = [p for p in tiny_run.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(tiny_run).parts]
    assert written and not [p.name for p in written if _pickled(p)]
    weights = load_file(tiny_run / "model.safetensors")
    assert any(k.startswith("head.") for k in weights) and any(k.startswith("backbone.") for k in weights)
    torch.save({"a": torch.zeros(1)}, tmp_path / "saved.pt")  # the check finds what it looks for
    assert _pickled(tmp_path / "saved.pt") and _pickled(next((tiny_run / "checkpoints").glob("*.ckpt")))


def test_frozen_phase_changes_only_the_head(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=10)
    torch.manual_seed(0)
    run = imagefit.train(data, out=tmp_path / "run", epochs=1, frozen_epochs=1, seed=5, **TINY)
    from imagefit.models import build_classifier

    torch.manual_seed(5)
    fresh, _, _ = build_classifier(run.recipe.model, 2, pretrained=False)
    trained = load_trained(run)
    for (name, before), after in zip(
        fresh.backbone.state_dict().items(), trained.backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(before, after), f"{name} changed while frozen (BatchNorm statistics included)"
    assert not torch.equal(fresh.head[-1].weight, trained.head[-1].weight)


def test_imbalanced_data_trains_with_class_weights_that_reach_the_loss(tmp_path):
    from imagefit.models import build_classifier
    from imagefit.training.module import ClassifierModule

    data = make_class_folders(tmp_path / "d", per_class=4, classes=("red",))
    make_class_folders(data, per_class=16, classes=("blue",))
    run = imagefit.train(data, out=tmp_path / "run", epochs=1, frozen_epochs=1, imbalance="weights", **TINY)
    assert run.config["imbalance_handling"] == "weights"
    model, _, _ = build_classifier(run.recipe.model, 2, pretrained=False)
    logits, targets = torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1])
    weights = torch.tensor([1.0, 4.0])
    weighted = ClassifierModule(model, run.recipe, 2, class_weights=weights).plain_loss(logits, targets)
    plain = ClassifierModule(model, run.recipe, 2).plain_loss(logits, targets)
    assert weighted > plain
    assert weighted == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets, weight=weights)))


def test_the_weighted_sampler_draws_the_minority_class_as_often_as_the_majority(tmp_path):
    from imagefit.config import Recipe
    from imagefit.data import scan
    from imagefit.data.datamodule import ImageDataModule
    from imagefit.data.preprocess import Preprocess

    data = make_class_folders(tmp_path / "d", per_class=4, classes=("red",))
    make_class_folders(data, per_class=16, classes=("blue",))
    samples = [s.__class__(s.path, s.label, "train") for s in scan(data).samples]
    recipe = Recipe().override(num_workers=0)
    drawn = []
    for sampler in (True, False):
        module = ImageDataModule(
            samples, ["blue", "red"], Preprocess(32, (0.5,) * 3, (0.5,) * 3), data=recipe.data, augment=recipe.augment,
            weighted_sampler=sampler,
        )  # fmt: skip
        loader = module.train_dataloader()
        order = [i for _ in range(10) for i in (loader.sampler if sampler else range(len(samples)))]
        drawn.append(sum(module.train_set.targets[i] == 1 for i in order) / len(order))
    assert drawn[1] == pytest.approx(0.2)  # 4 of 20 images without the sampler
    assert 0.35 < drawn[0] < 0.65  # about half with it


@pytest.mark.parametrize(
    "options",
    [
        {
            "imbalance": "sampler",
            "mixup": 0.2,
            "cutmix": 1.0,
            "auto_augment": "trivial",
            "vflip": True,
            "rotate": 180,
            "head": "16",
        }
    ],
)
def test_optional_recipe_paths_train(tmp_path, options):
    data = make_class_folders(tmp_path / "d", per_class=8)
    run = imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, **TINY, **options)
    assert run.config["imbalance_handling"] == "sampler"
    assert len(_history(run.path)) == 2


def test_test_split_is_carved_and_reported(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=10)
    run = imagefit.train(data, out=tmp_path / "run", epochs=1, frozen_epochs=0, test_split=0.2, **TINY)
    assert run.metrics["test"]["count"] == 4
    assert {s.split for s in run.split()} == {"train", "val", "test"}


def test_out_folder_that_is_not_empty_is_refused(tmp_path, class_folders):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        imagefit.train(class_folders, out=tmp_path / "taken", **TINY)
    assert (tmp_path / "taken" / "file").read_text() == "keep me"


def test_run_names_count_up(tmp_path, class_folders):
    first = imagefit.train(class_folders, runs_dir=tmp_path / "runs", epochs=1, frozen_epochs=1, **TINY)
    second = imagefit.train(class_folders, runs_dir=tmp_path / "runs", epochs=1, frozen_epochs=1, **TINY)
    assert (first.path.name, second.path.name) == ("colours", "colours-2")


def _layout(tmp_path, kind):
    if kind == "folders":
        return make_class_folders(tmp_path / "d", per_class=8)
    if kind == "presplit":
        make_class_folders(tmp_path / "d", per_class=8, split="train")
        return make_class_folders(tmp_path / "d", per_class=3, split="validation")
    if kind == "csv":
        make_class_folders(tmp_path / "images", per_class=8)
        rows = ["path,label"] + [
            f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}"
            for p in sorted((tmp_path / "images").rglob("*.jpg"))
        ]
        (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
        return tmp_path / "labels.csv"
    make_class_folders(tmp_path / "d", per_class=8, split="train")
    make_class_folders(tmp_path / "d", per_class=3, split="val")
    return zip_folder(tmp_path / "d", tmp_path / "data.zip", root_name="inside")


@pytest.mark.parametrize("kind", ["folders", "presplit", "csv", "zip"])
def test_every_data_layout_trains(tmp_path, kind):
    data = _layout(tmp_path, kind)
    options = {**TINY, "num_workers": 2} if kind == "zip" else TINY  # zip members read in worker processes
    run = imagefit.train(data, out=tmp_path / "run", epochs=1, frozen_epochs=1, **options)
    expected_val = {"folders": 2, "presplit": 6, "csv": 2, "zip": 6}[kind]  # 15% of 8 rounds to 1 a class
    assert run.metrics["val"]["count"] == expected_val


def test_same_seed_gives_the_same_split_and_close_results(tmp_path, class_folders):
    first = imagefit.train(class_folders, out=tmp_path / "a", epochs=2, frozen_epochs=1, **TINY)
    second = imagefit.train(class_folders, out=tmp_path / "b", epochs=2, frozen_epochs=1, **TINY)
    assert (first.path / "split.csv").read_text() == (second.path / "split.csv").read_text()
    losses = [[float(r["val_loss"]) for r in _history(run.path)] for run in (first, second)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


def test_resume_with_moved_data_names_the_missing_images(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=6)
    imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False, **TINY)
    data.rename(tmp_path / "moved")
    with pytest.raises(UserError, match="12 images of .* are gone"):
        imagefit.train(resume=tmp_path / "run")


def test_unknown_model_makes_no_run_folder(tmp_path, class_folders):
    with pytest.raises(UserError, match="unknown model"):
        imagefit.train(class_folders, runs_dir=tmp_path / "runs", **{**TINY, "model": "resnet5O"})
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("finetune_bn", [False, True])
def test_phase_two_keeps_pretrained_batchnorm_statistics_unless_asked(tmp_path, finetune_bn):
    data = make_class_folders(tmp_path / "d", per_class=10)
    run = imagefit.train(
        data, out=tmp_path / "run", epochs=2, frozen_epochs=1, seed=5, finetune_bn=finetune_bn, report=False, **TINY
    )
    from imagefit.models import build_classifier

    torch.manual_seed(5)
    fresh, _, _ = build_classifier(run.recipe.model, 2, pretrained=False)
    # The last epoch's weights (the run may keep the head-only model if it scores better).
    state = torch.load(run.path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    before = fresh.backbone.state_dict()
    after = {k.removeprefix("model.backbone."): v for k, v in state.items() if k.startswith("model.backbone.")}
    statistics = [k for k in before if k.endswith("running_mean")]
    weights = [k for k in before if k.endswith("conv_head.weight")]  # the last layer (keep_frozen: not the stem)
    assert statistics and weights
    assert not torch.equal(before[weights[0]], after[weights[0]]), "phase 2 trains the backbone"
    changed = any(not torch.equal(before[k], after[k]) for k in statistics)
    assert changed == finetune_bn


def test_one_epoch_asked_for_trains_the_head_alone_with_a_note(tmp_path):
    from io import StringIO

    from rich.console import Console

    data = make_class_folders(tmp_path / "d", per_class=8)
    printed = StringIO()
    options = {k: v for k, v in TINY.items()}
    run = imagefit.train(data, out=tmp_path / "run", epochs=1, report=False, console=Console(file=printed), **options)
    assert [r["phase"] for r in _history(run.path)] == ["1"]
    assert "--epochs 1 is not above the 3 default head epochs" in printed.getvalue()


def test_a_log_gets_one_plain_line_per_epoch(tmp_path):
    from io import StringIO

    from rich.console import Console

    data = make_class_folders(tmp_path / "d", per_class=8)
    printed = StringIO()
    imagefit.train(
        data, out=tmp_path / "run", epochs=3, frozen_epochs=1, report=False, console=Console(file=printed), **TINY
    )
    text = printed.getvalue()
    assert "epoch 2/3 (fine-tuning): train loss" in text and "epoch 3/3 (fine-tuning)" in text
    assert "phase:" not in text and "Epoch 0/" not in text and "it/s" not in text, "no bar redraws in a log"


def test_competition_layout_writes_a_submission_of_the_unlabelled_test_images(tmp_path):
    from conftest import colour_image

    data = make_class_folders(tmp_path / "d", per_class=8, split="train")
    (data / "test").mkdir()
    for i, colour in enumerate([(200, 40, 40), (40, 40, 200), (200, 40, 40)]):
        colour_image(colour, seed=100 + i).save(data / "test" / f"img{i}.jpg")
    run = imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False, **TINY)
    rows = (run.path / "submission.csv").read_text().splitlines()
    assert rows[0] == "Id,Category" and sorted(r.split(",")[0] for r in rows[1:]) == ["img0", "img1", "img2"]
    assert dict(r.split(",") for r in rows[1:]) == {"img0": "red", "img1": "blue", "img2": "red"}
    (run.path / "submission.csv").unlink()  # the folder of a run interrupted right after its evaluation
    imagefit.train(resume=run.path, report=False)
    assert (run.path / "submission.csv").read_text().splitlines() == rows, "the resume writes what was left"
    with pytest.raises(imagefit.UserError, match="nothing to resume"):
        imagefit.train(resume=run.path, report=False)


def test_micro_batches_take_the_same_optimizer_steps_as_whole_batches(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=12)
    options = {**TINY, "epochs": 3, "frozen_epochs": 1, "dropout": 0.0, "report": False, "unknown_index": False}
    whole = imagefit.train(data, out=tmp_path / "whole", **options)
    micro = imagefit.train(data, out=tmp_path / "micro", micro_batch=4, **options)
    steps = [torch.load(r.path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] for r in (whole, micro)]
    assert steps[0] == steps[1] > 0, "4-image forward passes accumulate to the 8-image steps"
    assert micro.metrics["val"]["accuracy"] == whole.metrics["val"]["accuracy"] == 1.0
    from imagefit.data.datamodule import ImageDataModule
    from imagefit.data.preprocess import Preprocess

    module = ImageDataModule(
        micro.split(),
        micro.classes,
        Preprocess(32, (0.5,) * 3, (0.5,) * 3),
        data=micro.recipe.data,
        augment=micro.recipe.augment,
    )
    assert next(iter(module.train_dataloader()))[0].shape[0] == 4, "the loader hands out micro batches"


def test_auto_micro_batches_are_for_a_cpu_while_batchnorm_statistics_are_frozen():
    from imagefit.config import AUTO_MICRO_BATCH, Recipe
    from imagefit.training.plan import resolve_micro_batch

    cpu = Recipe().override(accelerator="cpu")
    assert resolve_micro_batch(cpu).data.micro_batch == AUTO_MICRO_BATCH < cpu.data.batch_size
    assert resolve_micro_batch(cpu.override(finetune_bn=True)).data.micro_batch == 0, "batch statistics need it whole"
    assert resolve_micro_batch(cpu.override(batch_size=8)).data.micro_batch == 0
    assert resolve_micro_batch(cpu.override(micro_batch=16)).data.micro_batch == 16, "a value set stays"
