"""evaluate, predict (PyTorch and ONNX), explain, report and export on a tiny run trained in this session."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import colour_image, make_class_folders
from PIL import Image

import imagefit
from imagefit.data.preprocess import Preprocess, eval_array
from imagefit.data.transforms import eval_transform
from imagefit.errors import UserError
from imagefit.prediction.loading import predict
from imagefit.prediction.output import write_csv
from imagefit.tasks.scores import classification_metrics


def _val_paths(run_dir, count=6):
    return [s.path for s in imagefit.load_run(run_dir).split() if s.split == "val"][:count]


def test_numpy_eval_preprocessing_equals_the_torchvision_eval_transform():
    preprocess = Preprocess(size=48, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bicubic")
    image = colour_image((100, 150, 200), seed=7, size=(73, 61))
    expected = eval_transform(preprocess)(image).numpy()
    assert np.allclose(eval_array(image, preprocess), expected, atol=1e-5)


def test_metrics_have_every_figure_and_top5_only_above_five_classes():
    rng = np.random.default_rng(0)
    six = rng.dirichlet(np.ones(6), size=40)
    figures = classification_metrics(rng.integers(0, 6, 40).tolist(), six, [f"c{i}" for i in range(6)])
    assert {"accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "log_loss", "ece", "per_class"} <= set(
        figures
    )
    perfect = classification_metrics([0, 1, 1], np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), ["a", "b"])
    assert "top5_accuracy" not in perfect
    assert perfect["accuracy"] == 1.0 and perfect["log_loss"] < 1e-6 and perfect["ece"] < 1e-6


def test_evaluate_writes_metrics_and_per_image_predictions(tiny_run):
    (result,) = imagefit.evaluate(tiny_run, split="val")
    with (tiny_run / "predictions-val.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result.metrics["count"] == sum(s.split == "val" for s in imagefit.load_run(tiny_run).split())
    assert set(rows[0]) == {"path", "true", "predicted", "confidence", "blue", "red", "unknown_score"}
    stored = json.loads((tiny_run / "metrics.json").read_text())
    assert stored["val"]["balanced_accuracy"] == pytest.approx(result.metrics["balanced_accuracy"])


def test_evaluate_on_data_with_unknown_classes_lists_them(tiny_run, tmp_path):
    data = make_class_folders(tmp_path / "other", per_class=2, classes=("red", "purple"))
    with pytest.raises(UserError, match="does not know: purple"):
        imagefit.evaluate(tiny_run, data)


def test_predict_folder_writes_id_category_and_skips_bad_files(tiny_run, tmp_path):
    folder = make_class_folders(tmp_path / "new", per_class=3)
    (folder / "red" / "notes.txt").write_text("not an image")
    predictions = predict(tiny_run, [folder])
    assert len(predictions.paths) == 6 and len(predictions.skipped) == 1
    out = write_csv(predictions, tmp_path / "preds.csv")
    with out.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Id", "Category"]
    assert sorted(r[0] for r in rows[1:]) == ["000", "000", "001", "001", "002", "002"]
    assert sum(r[1] == "red" for r in rows[1:]) >= 2
    with pytest.raises(UserError, match="exists"):
        write_csv(predictions, out)


def test_the_locators_a_split_records_for_a_zip_are_predicted_as_they_are(tiny_run, tmp_path):
    # distill predicts its teacher's training images by their split.csv locators: a zip's are ARCHIVE::member
    from conftest import zip_folder

    archive = zip_folder(make_class_folders(tmp_path / "images", per_class=2), tmp_path / "images.zip")
    locators = [f"{archive}::red/001.jpg", f"{archive}::blue/000.jpg"]
    whole = predict(tiny_run, [archive])
    one_by_one = predict(tiny_run, locators)
    assert one_by_one.paths == locators
    by_path = dict(zip(whole.paths, whole.probabilities, strict=True))
    assert np.allclose(one_by_one.probabilities, [by_path[locator] for locator in locators], atol=1e-6)
    with pytest.raises(UserError, match="no such file"):
        predict(tiny_run, [f"{tmp_path / 'missing.zip'}::red/001.jpg"])


def test_tta_with_two_views_averages_the_image_and_its_mirror(tiny_run, tmp_path):
    image = colour_image((200, 60, 90), seed=11, size=(50, 40))
    image.save(tmp_path / "a.png")
    image.transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "b.png")
    plain = predict(tiny_run, [tmp_path / "a.png", tmp_path / "b.png"]).probabilities
    both = predict(tiny_run, [tmp_path / "a.png"], tta=True, tta_n=2).probabilities
    assert np.allclose(both[0], plain.mean(axis=0), atol=1e-5)


def test_onnx_export_agrees_with_pytorch(tiny_run):
    onnx_path = imagefit.export_onnx(tiny_run, overwrite=True)
    facts = json.loads(onnx_path.with_suffix(".json").read_text())
    assert facts["classes"] == ["blue", "red"] and facts["preprocess"]["size"] == 32
    paths = _val_paths(tiny_run)
    torch_probabilities = predict(tiny_run, paths).probabilities
    onnx_probabilities = predict(onnx_path, paths).probabilities
    assert np.abs(torch_probabilities - onnx_probabilities).max() < 1e-4
    assert (torch_probabilities.argmax(1) == onnx_probabilities.argmax(1)).all()


def test_onnx_prediction_never_imports_torch(tiny_run, tmp_path):
    onnx_path = imagefit.export_onnx(tiny_run, out=tmp_path / "new" / "m.onnx")  # a folder not made yet
    script = (
        "import sys; from imagefit.prediction.loading import predict; "
        f"p = predict({str(onnx_path)!r}, {_val_paths(tiny_run, 2)!r}); "
        "assert len(p.paths) == 2; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "False"


def test_export_refuses_to_overwrite(tiny_run):
    imagefit.export_onnx(tiny_run, overwrite=True)
    with pytest.raises(UserError, match="exists"):
        imagefit.export_onnx(tiny_run)


def test_explain_writes_overlays_for_the_predicted_class(tiny_run, tmp_path):
    paths = _val_paths(tiny_run, 2)
    explanations = imagefit.explain(tiny_run, paths, out_dir=tmp_path / "cams")
    assert len(explanations) == 2 and all(e.overlay.shape == (32, 32, 3) for e in explanations)
    predicted = imagefit.predict(tiny_run, paths, tta_n=1)
    assert [e.label for e in explanations] == predicted.labels
    assert [e.confidence for e in explanations] == pytest.approx(predicted.probabilities.max(axis=1), abs=1e-3)
    assert len(list((tmp_path / "cams").glob("*.png"))) == 2


@pytest.mark.parametrize("model_name, expected_layer", [("test_vit", "norm1"), ("test_resnet", None)])
def test_gradcam_target_layer_is_found_for_cnns_and_vits(model_name, expected_layer):
    from imagefit.config import ModelRecipe
    from imagefit.models import build_classifier
    from imagefit.prediction.gradcam import find_target_layer, gradcam

    model, preprocess, _ = build_classifier(ModelRecipe(model=model_name, pretrained=False), 3)
    layer, reshape = find_target_layer(model.backbone, preprocess.size)
    named = {module: name for name, module in model.backbone.named_modules()}
    if expected_layer:
        assert named[layer].endswith(expected_layer) and reshape is not None
    else:
        assert reshape is None
    image = colour_image((10, 200, 30), seed=3, size=(preprocess.size + 10, preprocess.size))
    ((overlay, label, confidence),) = gradcam(model, preprocess, [image], ["a", "b", "c"])
    assert overlay.shape == (preprocess.size, preprocess.size, 3) and 0 <= confidence <= 1


def test_report_is_self_contained_with_every_section(tiny_run):
    page = imagefit.write_report(tiny_run).read_text()
    for section in ("summary", "curves", "confusion", "per-class", "errors", "gradcam", "calibration", "recipe"):
        assert f'<section id="{section}">' in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 4 and all(s.startswith("data:image/") for s in sources)
    assert "http://" not in page and "https://" not in page


def test_commands_after_training_run_from_the_command_line(tiny_run, tmp_path):
    def imagefit_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "imagefit.cli", *args], capture_output=True, text=True, timeout=300
        )

    images = make_class_folders(tmp_path / "imgs", per_class=2)
    assert imagefit_cli("evaluate", str(tiny_run)).returncode == 0
    predicted = imagefit_cli("predict", str(tiny_run), str(images), "--out", str(tmp_path / "p.csv"), "--tta", "--full")
    assert predicted.returncode == 0, predicted.stderr[-1500:]
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "Id,Category,path,confidence,top_k,unknown,unknown_score"
    shown = [line for line in predicted.stdout.splitlines() if line.startswith("000.jpg: ")]
    assert len(shown) == 2 and all(line.count(", ") == 1 for line in shown), "a few images: each one's top classes"
    again = imagefit_cli("predict", str(tiny_run), str(images), "--out", str(tmp_path / "p.csv"))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    missing = imagefit_cli("evaluate", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such run folder" in missing.stderr
    assert imagefit_cli("report", str(tiny_run)).returncode == 0


def test_loading_an_incomplete_run_names_what_is_missing(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="missing model.safetensors, labels.json"):
        imagefit.load_run(tmp_path / "half")


def test_run_from_a_newer_imagefit_is_refused(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "newer"
    shutil.copytree(tiny_run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "format_version": 99, "imagefit_version": "9.0"}))
    with pytest.raises(UserError, match="newer imagefit"):
        imagefit.load_run(copy)


def test_predict_with_no_images_is_a_clear_error(tiny_run, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no files in"):
        predict(tiny_run, [tmp_path / "empty"])
