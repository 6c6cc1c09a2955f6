"""imagefit add-class: a class learnt from a few examples, no retraining; the bad inputs in one line."""

import pytest
from conftest import TINY, colour_image, make_class_folders

import imagefit
from imagefit.errors import UserError
from imagefit.prediction.loading import predict
from imagefit.training.add_class import add_class


@pytest.fixture(scope="module")
def two_colours(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    data = make_class_folders(root / "d", per_class=30)
    return imagefit.train(data, out=root / "run", epochs=4, frozen_epochs=1, report=False, **TINY).path


def test_a_class_added_from_five_examples_is_predicted_and_the_others_stay_right(two_colours, tmp_path):
    examples = make_class_folders(tmp_path / "ex", per_class=5, classes=("green",), first_seed=900)
    grown = add_class(two_colours, "green", [examples / "green"], out=tmp_path / "grown")
    assert grown.classes == ["blue", "red", "green"]
    fresh = make_class_folders(tmp_path / "new", per_class=10, classes=("red", "blue", "green"), first_seed=1200)
    predicted = predict(grown.path, [fresh]).labels
    truth = [p.split("/")[-2] for p in predict(grown.path, [fresh]).paths]
    by_class = {c: sum(p == t for p, t in zip(predicted, truth, strict=True) if t == c) / 10 for c in set(truth)}
    assert by_class["green"] >= 0.8, by_class
    assert by_class["red"] >= 0.8 and by_class["blue"] >= 0.8, by_class
    assert grown.config["added_classes"] == [{"name": "green", "examples": 5}]


def test_add_class_refuses_a_known_name_no_images_and_an_onnx_model(two_colours, tmp_path):
    with pytest.raises(UserError, match="'red' is already a class"):
        add_class(two_colours, "red", [two_colours / "split.csv"], out=tmp_path / "a")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.jpg").write_text("not a picture")
    with pytest.raises(UserError, match="is a readable image; nothing to learn from"):
        add_class(two_colours, "green", [tmp_path / "junk"], out=tmp_path / "b")
    with pytest.raises(UserError, match="not an ONNX model or an ensemble"):
        add_class(tmp_path / "m.onnx", "green", [tmp_path / "junk"], out=tmp_path / "c")
    colour_image((0, 0, 0), seed=0)  # conftest import used
