"""Unknown images: flagged by distance to the training embeddings, the same in PyTorch and ONNX Runtime."""

import numpy as np
import pytest
from conftest import TINY, make_class_folders

import imagefit
from imagefit.evaluation.evaluator import evaluate
from imagefit.prediction.openset import UnknownIndex, auroc, threshold_for


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """A run trained on red and blue; green and a fourth colour held out of training."""
    root = tmp_path_factory.mktemp("open")
    known = make_class_folders(root / "known", per_class=60)
    run = imagefit.train(known, out=root / "run", epochs=4, frozen_epochs=1, report=False, **TINY)
    other = make_class_folders(root / "other", per_class=12, classes=("red", "blue", "green", "grey"), first_seed=500)
    return run.path, other


def test_unknown_classes_score_higher_than_known_ones(held_out):
    run, other = held_out
    (result,) = evaluate(run, other, unknown=True)
    found = result.metrics["unknown"]
    assert (found["known"], found["unknown"]) == (24, 24)
    assert found["auroc"]["knn"] > 0.8, "held-out colours are far from every training image"
    assert result.metrics["accuracy"] > 0.9, "class figures are on the known images"


def test_the_threshold_flags_about_the_chosen_share_of_known_val_images(held_out):
    import json

    run, _ = held_out
    facts = json.loads((run / "config.json").read_text())["unknown"]
    assert facts["false_alarm"] == 0.05 and facts["index_size"] == 102
    flagged = json.loads((run / "metrics.json").read_text())["val"]["flagged_unknown"]
    assert 0 < flagged <= 0.1, "about 5% of the 18 known val images are flagged: one"


def test_onnx_gives_the_same_unknown_scores_as_pytorch(held_out, tmp_path):
    from imagefit.export.onnx import export_onnx
    from imagefit.prediction.loading import predict

    run, other = held_out
    images = sorted(str(p) for p in other.rglob("*.jpg"))[:16]
    torch_predictions = predict(run, images)
    onnx_predictions = predict(export_onnx(run, out=tmp_path / "m.onnx"), images)
    np.testing.assert_allclose(onnx_predictions.unknown_scores, torch_predictions.unknown_scores, atol=1e-4)
    assert (onnx_predictions.unknown == torch_predictions.unknown).all()


def test_predict_full_and_unknown_label_columns(held_out, tmp_path):
    from imagefit.prediction.loading import predict
    from imagefit.prediction.output import write_csv

    run, other = held_out
    predictions = predict(run, [other / "grey", other / "red"])
    write_csv(predictions, tmp_path / "p.csv", full=True, unknown_label="unknown")
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "Id,Category,path,confidence,top_k,unknown,unknown_score"
    labels = [row.split(",")[1] for row in rows[1:]]
    assert labels.count("unknown") >= 8, "most grey images, a colour never trained on, are called unknown"


def test_index_scores_and_threshold_by_hand():
    index = UnknownIndex(np.eye(3, dtype=np.float32), neighbour=1)
    scores = index.scores(np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    assert scores[0] == pytest.approx(0.0) and scores[1] == pytest.approx(1 - 1 / np.sqrt(3))
    assert threshold_for(np.arange(100.0)) == pytest.approx(94.05)
    assert auroc(np.array([0.1, 0.2]), np.array([0.8, 0.9])) == 1.0
