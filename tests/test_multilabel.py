"""Multi-label images: CSVs with several labels a cell or one 0/1 column a label, stratified splits, binary
cross-entropy training, per-label thresholds, metrics, Id,Labels predictions and the ONNX path."""

import csv
import json
import re

import numpy as np
import pytest
from conftest import COLOURS, TINY
from PIL import Image

import imagefit
from imagefit.data import find_samples
from imagefit.data.split import assign_splits
from imagefit.tasks import task_for

NAMES = ("red", "blue", "green")


def _striped(colours: list[str], seed: int) -> Image.Image:
    """Vertical stripes of the given colours (with noise): an image showing each of its labels."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((36, 42, 3), dtype=np.int16)
    for index, name in enumerate(colours):
        width = 42 // len(colours)
        pixels[:, index * width : (index + 1) * width] = COLOURS[name]
    pixels += rng.integers(-30, 30, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _dataset(root, count: int = 60, *, delimiter: str = " ") -> tuple:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(count):
        chosen = [n for n in NAMES if rng.random() < 0.45] or [NAMES[i % 3]]
        _striped(chosen, seed=i).save(root / "images" / f"{i:03d}.png")
        rows.append((f"{i:03d}", chosen))
    table = root / "labels.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "tags"])
        writer.writerows([(name, delimiter.join(tags)) for name, tags in rows])
    return table, rows


@pytest.mark.parametrize("delimiter", [" ", ";", "|"])
def test_a_cell_of_several_labels_makes_a_multi_label_csv(tmp_path, delimiter):
    table, rows = _dataset(tmp_path, 12, delimiter=delimiter)
    found = find_samples(table)
    assert found.task == "multi-label" and "several labels an image" in found.facts[0]
    assert [s.label for s in found.samples] == ["|".join(sorted(tags)) for _, tags in rows]


def test_one_zero_one_column_a_label_and_an_image_with_none(tmp_path):
    _dataset(tmp_path, 4)
    table = tmp_path / "onehot.csv"
    table.write_text("image,healthy,rust,scab\n000,1,0,0\n001,0,1,1\n002,0,0,0\n003,0,0,1\n")
    found = find_samples(table)
    assert found.task == "multi-label"
    assert [s.label for s in found.samples] == ["healthy", "rust|scab", "", "scab"]


def test_class_names_with_spaces_stay_single_label(tmp_path):
    _dataset(tmp_path, 3)
    table = tmp_path / "t.csv"
    table.write_text("image,label\n000,Épine rouge\n001,Épine rouge\n002,lys\n")
    assert find_samples(table).task == "single-label"


def test_the_split_is_stratified_for_every_label(tmp_path):
    table, _ = _dataset(tmp_path, 60)
    samples = assign_splits(find_samples(table).samples, val_split=0.2, test_split=0.0, seed=0, task="multi-label")
    val = [s for s in samples if s.split == "val"]
    assert 10 <= len(val) <= 14
    assert set(task_for("multi-label").classes_of([s.label for s in val])) == set(NAMES), "every label in val"


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    table, _ = _dataset(root / "d", 90)
    run = imagefit.train(table, out=root / "run", epochs=6, frozen_epochs=1, test_split=0.15, **TINY)
    return run


def test_a_multi_label_run_trains_and_records_its_task_thresholds_and_figures(multi_run):
    config = json.loads((multi_run.path / "config.json").read_text())
    assert config["task"] == "multi-label" and set(config["thresholds"]) == set(NAMES)
    assert all(0.05 <= t <= 0.95 for t in config["thresholds"].values())
    val = multi_run.metrics["val"]
    assert val["mean_average_precision"] > 0.8, "stripes of colour are learnable"
    assert {"subset_accuracy", "hamming_loss", "micro_average_precision"} <= set(val)
    assert set(val["per_class"]["red"]) >= {"average_precision", "precision", "recall", "f1", "threshold"}
    assert "Precision-recall curves" in (multi_run.path / "report.html").read_text()


def test_predict_writes_id_labels_and_onnx_gives_the_same_probabilities(multi_run, tmp_path):
    from imagefit.export.onnx import export_onnx
    from imagefit.prediction.loading import predict
    from imagefit.prediction.output import write_csv

    _striped(["red", "green"], seed=999).save(tmp_path / "both.png")
    _striped(["blue"], seed=998).save(tmp_path / "blue.png")
    predictions = predict(multi_run.path, [tmp_path])
    write_csv(predictions, tmp_path / "p.csv", full=True)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "Id,Labels,path,blue,green,red"
    answers = dict(line.split(",")[:2] for line in lines[1:])
    assert answers == {"blue": "blue", "both": "green red"}
    onnx = predict(export_onnx(multi_run.path, out=tmp_path / "m.onnx"), [tmp_path])
    np.testing.assert_allclose(onnx.probabilities, predictions.probabilities, atol=1e-4)
    assert onnx.labels == predictions.labels


def test_a_refit_of_a_multi_label_run_keeps_its_thresholds(multi_run, tmp_path):
    from imagefit.training.pipeline import refit

    done = refit(multi_run.path, out=tmp_path / "refit")
    config = json.loads((done.path / "config.json").read_text())
    assert config["task"] == "multi-label" and config["thresholds"] == multi_run.config["thresholds"]
    assert "test" in done.metrics and "mean_average_precision" in done.metrics["test"]
    assert done.metrics["val_estimate"] == multi_run.metrics["val"] and "val" not in done.metrics


def test_the_audit_of_multi_label_data_counts_labels_and_finds_twin_labels_and_unlabelled_images(tmp_path):
    from imagefit.audit import audit

    table, rows = _dataset(tmp_path, 40)
    with table.open("w", newline="") as handle:  # "scarlet" rides with every "red": one label under two names
        writer = csv.writer(handle)
        writer.writerow(["image", "tags"])
        for index, (name, tags) in enumerate(rows):
            tags = [] if index < 3 else tags + (["scarlet"] if "red" in tags else [])
            writer.writerow([name, ";".join(tags)])
    report = audit(table, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    (imbalance,) = report.of_kind("imbalance")
    train_rows = [tags for index, (_, tags) in enumerate(rows) if index >= 3]
    assert imbalance.detail["counts"]["blue"] == sum("blue" in tags for tags in train_rows)
    assert imbalance.detail["no_label"] == 3 and imbalance.detail["always_together"] == [["red", "scarlet"]]
    (stats,) = report.of_kind("stats")
    assert stats.detail["per_class"]["green"]["images"] == sum("green" in tags for tags in train_rows)
    assert {f.kind for f in report.findings} >= {"label_issue", "outlier", "near_duplicate"}, "the other checks run"
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert "red + scarlet" in page and "Training images with no label: 3" in page


@pytest.mark.parametrize(
    "rows, fragment",
    [
        ("000,a;b\n001,a|c\n002,b\n", "labels are parted by ';' (line 2) and by '|' (line 3)"),
        ("000,a;;b\n001,a\n002,b\n", ":2: 'a;;b' has an empty label"),
        ("000,b;c\n001,a;\n002,b\n", ":3: 'a;' has an empty label"),
    ],
)
def test_a_label_column_with_mixed_delimiters_or_an_empty_name_is_one_line_naming_the_row(tmp_path, rows, fragment):
    from imagefit.errors import UserError

    _dataset(tmp_path, 3)
    table = tmp_path / "bad.csv"
    table.write_text("image,tags\n" + rows)
    with pytest.raises(UserError, match=re.escape(fragment)):
        find_samples(table)


def test_a_zero_one_column_holding_another_value_is_one_line_naming_the_row(tmp_path):
    from imagefit.errors import UserError

    _dataset(tmp_path, 6)
    table = tmp_path / "flags.csv"
    table.write_text("image,a,b,c\n000,1,0,0\n001,0,2,1\n002,1,1,0\n003,0,0,1\n004,1,0,0\n005,0,1,0\n")
    with pytest.raises(UserError, match=re.escape("flags.csv:3: column 'b' holds '2'")):
        find_samples(table)


def test_commands_for_single_label_runs_refuse_a_multi_label_run_in_one_line(multi_run, tiny_run, tmp_path):
    from imagefit.errors import UserError
    from imagefit.evaluation.ensembles import make_ensemble
    from imagefit.training.add_class import add_class

    _striped(["red"], seed=5).save(tmp_path / "new.png")
    with pytest.raises(UserError, match="is multi-label: add-class works on single-label runs"):
        add_class(multi_run.path, "pink", [tmp_path / "new.png"], out=tmp_path / "added")
    with pytest.raises(UserError, match="ensembles are of single-label runs"):
        make_ensemble([tiny_run, multi_run.path], out=tmp_path / "ens")


def test_per_label_pseudo_labels_pass_every_labels_threshold_within_each_labels_share():
    from imagefit.training.pseudo import NONE, choose_labels, label_thresholds

    classes = ["a", "b"]
    decision = np.array([0.5, 0.4])
    # val: label a's decisions right when sure (>= 0.8 either way), b's right everywhere
    val = np.array([[0.95, 0.9]] * 6 + [[0.05, 0.1]] * 6 + [[0.6, 0.9], [0.45, 0.1]] * 3)
    truth = np.array([[1, 1]] * 6 + [[0, 0]] * 6 + [[0, 1], [1, 0]] * 3)
    thresholds, goals = label_thresholds(val, truth, decision)
    assert thresholds[0] == pytest.approx(0.95) and thresholds[1] == pytest.approx(0.9)
    assert goals[1] == 1.0 and goals[0] == pytest.approx((1 + 12 / 18) / 2)
    probabilities = np.array([[0.99, 0.99], [0.97, 0.95], [0.98, 0.02], [0.01, 0.03], [0.02, 0.95], [0.7, 0.99]])
    paths = [f"u{i}" for i in range(len(probabilities))]
    train_rows = np.array([[1, 1], [1, 0], [0, 0], [0, 1]])  # a on half, b on half, none on a quarter
    chosen = choose_labels(paths, probabilities, classes, decision=decision, thresholds=thresholds, goals=goals,
                           train_rows=train_rows)  # fmt: skip
    assert chosen.passed == 5, "u5's label a (0.7) is less sure than a's threshold"
    assert chosen.caps == {"a": 3, "b": 3, NONE: 2}
    kept = {path: label for path, label, _ in chosen.rows}
    assert kept == {"u0": "a|b", "u1": "a|b", "u2": "a", "u3": "", "u4": "b"}
    assert chosen.per_class() == {"a": 3, "b": 3, NONE: 1}
    np.testing.assert_allclose(chosen.soft["u2"], [0.98, 0.02])
    tight = choose_labels(paths, probabilities, classes, decision=decision, thresholds=thresholds, goals=goals,
                          train_rows=np.array([[1, 1], [0, 0], [0, 0], [0, 0]]))  # fmt: skip
    assert tight.caps == {"a": 2, "b": 2, NONE: 4}
    kept = sorted(p for p, _, _ in tight.rows)
    assert kept == ["u0", "u2", "u3", "u4"], "u1 (a|b, less sure than u0 and u2) would be a's third: over its cap"


def test_soft_rows_of_a_multi_label_dataset_keep_the_multi_hot_rows_elsewhere():
    from imagefit.data import Sample
    from imagefit.data.datamodule import ImageDataset

    samples = [Sample("x.png", "red|blue", "train"), Sample("y.png", "", "train"), Sample("z.png", "green", "train")]
    dataset = ImageDataset(samples, {n: i for i, n in enumerate(NAMES)}, transform=None, task="multi-label",
                           soft={"y.png": np.array([0.2, 0.7, 0.1], dtype=np.float32)})  # fmt: skip
    np.testing.assert_allclose(np.stack(dataset.targets), [[1, 1, 0], [0.2, 0.7, 0.1], [0, 0, 1]])


def test_a_multi_label_run_trains_students_on_per_label_pseudo_labels(tmp_path):
    table, rows = _dataset(tmp_path / "d", 90)
    pool = tmp_path / "pool"
    pool.mkdir()
    truth = {}
    rng = np.random.default_rng(7)
    for i in range(30):
        chosen = [n for n in NAMES if rng.random() < 0.45] or [NAMES[i % 3]]
        _striped(chosen, seed=9000 + i).save(pool / f"u{i:02d}.png")
        truth[f"u{i:02d}.png"] = "|".join(sorted(chosen))
    out = tmp_path / "run"
    imagefit.train(table, out=out, epochs=4, frozen_epochs=1, report=False, unlabelled=pool, **TINY)
    student = tmp_path / "run-student1"
    assert student.is_dir(), "stripes are learnt surely enough for some images to pass every label's threshold"
    config = json.loads((student / "config.json").read_text())
    assert config["task"] == "multi-label" and set(config["thresholds"]) == set(NAMES)
    with (student / "pseudo-labels.csv").open() as handle:
        pseudo = list(csv.DictReader(handle))
    right = sum(truth[r["path"].rsplit("/", 1)[-1]] == r["label"] for r in pseudo)
    assert pseudo and right >= 0.8 * len(pseudo), f"{right} of {len(pseudo)} pseudo-labels right"
    soft = np.array([[float(r[n]) for n in NAMES] for r in pseudo])
    assert ((soft >= 0) & (soft <= 1)).all() and ((soft > 0) & (soft < 1)).any(), "a probability a label"
    assert not np.allclose(soft.sum(axis=1), 1), "labels are not one softmax"
    with (student / "split.csv").open() as handle:
        split = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    assert all(split[r["path"]] == r["label"] for r in pseudo), "the student trains on the labels it chose"
