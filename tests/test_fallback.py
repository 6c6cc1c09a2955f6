"""The raw-pixel SVM kept as an ordinary run when it beats the network on val (issue 28 item 6)."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image
from sklearn.svm import SVC

from imagefit.config import ModelRecipe
from imagefit.data.preprocess import Preprocess
from imagefit.models.pixels import NAME, PIXELS
from imagefit.training import fallback
from imagefit.training.fallback import pixel_model, pixels_won

PRE = Preprocess(size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
RECIPE = ModelRecipe(model=NAME, pretrained=False, head=(), dropout=0.0)


def _fitted(labels: list[str], seed: int = 0) -> tuple[SVC, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.random((60, PIXELS * PIXELS)) * 0.5
    for i, label in enumerate(labels):
        rows[i, : PIXELS * 4] += 0.2 * sorted(set(labels)).index(label)  # a band of pixels tells the classes apart
    return SVC(C=10, gamma="scale").fit(rows, labels), rows


@pytest.mark.parametrize("names", [("b", "a"), ("a", "b"), ("c", "a", "b"), ("q", "w", "e", "r")])
def test_the_pixel_model_gives_the_svms_decisions_in_the_runs_class_order(names):
    labels = [names[i % len(names)] for i in range(60)]
    fitted, _ = _fitted(labels)
    classes = [*names, "never-seen"]
    model = pixel_model(fitted, classes, PRE, RECIPE)
    queries = np.random.default_rng(1).random((40, PIXELS * PIXELS)) * 0.5
    queries[:, : PIXELS * 4] += np.linspace(0, 0.2 * len(names), 40)[:, None]  # near every class, and between
    scores = fallback.scores(model, queries)
    assert [classes[c] for c in scores.argmax(1)] == list(fitted.predict(queries))
    assert scores[:, classes.index("never-seen")].max() < -29, "a class the SVM never saw is never chosen"
    seen = [classes.index(name) for name in fitted.classes_]
    if len(names) > 2:  # scikit-learn's own scores (its two-class decision is one signed number)
        np.testing.assert_allclose(scores[:, seen], fitted.decision_function(queries), atol=1e-4)
    else:
        assert ((scores[:, seen[1]] > scores[:, seen[0]]) == (fitted.decision_function(queries) > 0)).all()


def test_the_pixel_model_is_the_svm_on_the_normalised_images_it_is_given():
    images = torch.rand(6, 3, 64, 64)
    normalised = (images - torch.tensor(PRE.mean).view(1, 3, 1, 1)) / torch.tensor(PRE.std).view(1, 3, 1, 1)
    grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    thumbnails = torch.nn.functional.avg_pool2d(grey, 2).flatten(1).numpy()  # 64 -> 32: 2x2 boxes
    fitted, _ = _fitted(["x", "y", "z"] * 20)
    model = pixel_model(fitted, ["x", "y", "z"], PRE, RECIPE)
    with torch.no_grad():
        scores = model(normalised).numpy()
    np.testing.assert_allclose(scores, fitted.decision_function(thumbnails), rtol=1e-4, atol=1e-4)
    assert sum(p.numel() for p in model.backbone.parameters()) == 0, "fitted, not trained: buffers only"


def test_the_svms_temperature_is_fitted_on_training_images_it_did_not_see():
    rng = np.random.default_rng(3)
    names = [f"k{c}" for c in range(8)]
    labels = [names[i % 8] for i in range(400)]
    centres = rng.random((8, PIXELS * PIXELS))
    rows = np.stack([centres[names.index(label)] for label in labels]) + rng.normal(0, 2.0, (400, PIXELS * PIXELS))
    temperature = fallback.cross_fitted_temperature(rows, labels, names, PRE, RECIPE)
    fitted_on, held = rows[:300], rows[300:]  # a fresh SVM, and images it did not see, to judge the temperature
    model = pixel_model(SVC(C=10, gamma="scale").fit(fitted_on, labels[:300]), names, PRE, RECIPE)
    logits = fallback.scores(model, held)
    right = (logits.argmax(1) == np.array([names.index(label) for label in labels[300:]])).mean()
    assert 0.5 < right < 0.99, "a set with mistakes to calibrate on"

    def confidence(t: float) -> float:
        shifted = np.exp((logits - logits.max(1, keepdims=True)) / t)
        return float((shifted.max(1) / shifted.sum(1)).mean())

    assert abs(confidence(temperature) - right) < 0.1 < abs(confidence(1.0) - right), (temperature, right)


def test_pixels_win_only_with_a_higher_val_accuracy_and_never_for_a_refit():
    config = {"measured": {"majority": 0.5, "pixels": {"accuracy": 0.9, "balanced": 0.9}}}
    assert pixels_won(config, {"val": {"accuracy": 0.8}})
    assert not pixels_won(config, {"val": {"accuracy": 0.9}})
    assert not pixels_won({**config, "refit_of": "runs/a"}, {"val": {"accuracy": 0.8}})
    assert not pixels_won({"measured": {"majority": 0.5}}, {"val": {"accuracy": 0.1}}), "a multi-label run"
    assert not pixels_won(config, {}), "not evaluated yet"


def _halves(root, *, per_class: int, first_seed: int):
    """Class `left` has its left half bright, class `right` its right half: the same brightness, the same
    texture, told apart only by where the bright half is (pixels see it; global pooling hardly does)."""
    for index, name in enumerate(("left", "right")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.random.default_rng(first_seed + 100 * index + i).integers(0, 60, (32, 32), dtype=np.uint8)
            if name == "left":
                pixels[:, :16] += 150
            else:
                pixels[:, 16:] += 150
            Image.fromarray(pixels, mode="L").save(folder / f"{i:03d}.png")
    return root


def test_a_run_whose_network_loses_to_raw_pixels_keeps_them_as_a_run(tmp_path):
    import imagefit
    from imagefit.training.summary import below_a_floor

    data = _halves(tmp_path / "halves", per_class=16, first_seed=0)
    out = tmp_path / "run"
    options = {**TINY, "lr": 1e-7}  # the network stays where it started: near chance on val
    imagefit.train(data, out=out, epochs=2, frozen_epochs=1, report=False, **options)
    run = imagefit.load_run(out)
    measured = run.config["measured"]["pixels"]["accuracy"]
    assert measured == 1.0 and run.metrics["val"]["accuracy"] < measured
    kept = imagefit.load_run(out / "pixels")
    assert kept.recipe.model.model == NAME and kept.config["raw_pixels_of"] == str(out)
    assert kept.metrics["val"]["accuracy"] == measured, "the run kept is the SVM that was measured"
    assert kept.split() == run.split() and kept.classes == run.classes
    assert "kept as a run of its own" in below_a_floor(run)
    new = _halves(tmp_path / "new", per_class=4, first_seed=500)
    predictions = imagefit.predict(out / "pixels", [new])
    truth = [path.split("/")[-2] for path in predictions.paths]
    assert predictions.labels == truth
    onnx = imagefit.export_onnx(out / "pixels")
    exported = imagefit.predict(onnx, [new])
    np.testing.assert_allclose(exported.probabilities, predictions.probabilities, atol=1e-4)
    from imagefit.report.writer import write_report
    from imagefit.training.refit import plan_refit

    assert "no feature map to explain" in write_report(out / "pixels").read_text(), "the report says why no Grad-CAM"
    with pytest.raises(imagefit.UserError, match=f"refit {out}"):
        plan_refit(out / "pixels")
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["model"]["model"] == TINY["model"], "the network's run is left as it was"
    from imagefit.training.add_class import add_class

    grown = add_class(out, "third", [new / "left"], out=tmp_path / "grown")
    assert grown.classes == [*run.classes, "third"] and (out / "pixels").is_dir()
    assert not (grown.path / "pixels").exists(), "the pixel run knows the old classes only: not copied"
    shutil.rmtree(out / "pixels")  # the folder of a run interrupted right after its evaluation
    imagefit.train(resume=out, report=False)
    assert imagefit.load_run(out / "pixels").metrics["val"]["accuracy"] == measured, "the resume writes it"


def test_the_thumbnail_is_adaptive_average_pooling_and_exports_to_onnx_at_any_size(tmp_path):
    import onnxruntime

    model = pixel_model(_fitted(["x", "y", "z"] * 20)[0], ["x", "y", "z"], PRE, RECIPE)
    for size in (50, 64):  # 50 is no multiple of 32: the pooling operator itself would not export there
        images = torch.rand(4, 3, size, size)
        normalised = (images - torch.tensor(PRE.mean).view(1, 3, 1, 1)) / torch.tensor(PRE.std).view(1, 3, 1, 1)
        grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        expected = torch.nn.functional.adaptive_avg_pool2d(grey, PIXELS).flatten(1)
        torch.testing.assert_close(model.backbone.thumbnail(normalised), expected)
        path = tmp_path / f"pixels-{size}.onnx"
        torch.onnx.export(model, normalised[:1], str(path), dynamo=False)
        session = onnxruntime.InferenceSession(str(path))
        (output,) = session.run(None, {session.get_inputs()[0].name: normalised[:1].numpy()})
        np.testing.assert_allclose(output, model(normalised[:1]).detach().numpy(), atol=1e-4)
