"""`imagefit train DATA --unlabelled DIR` (issue 29 item 1): the threshold on val, the caps, and the student rounds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import TINY, colour_image, make_class_folders

import imagefit
from imagefit import runs
from imagefit.errors import TrainingInterrupted, UserError
from imagefit.training.pseudo import NOISE_SE, choose, class_caps, paired_verdict, precision_goal, val_threshold
from imagefit.training.round_time import round_share
from imagefit.training.students import val_losses


def test_the_threshold_is_the_lowest_confidence_whose_val_predictions_reach_half_the_error_rate():
    # 20 val images: the 12 most confident right, then alternating wrong and right.
    confidence = np.linspace(0.99, 0.40, 20)
    correct = np.array([True] * 12 + [False, True] * 4)
    threshold, goal = val_threshold(confidence, correct)
    assert goal == pytest.approx(precision_goal(correct.mean())) == pytest.approx((1 + 16 / 20) / 2)
    above = confidence >= threshold
    assert correct[above].mean() >= goal
    lower = confidence[~above].max()  # one step lower misses the goal
    assert correct[confidence >= lower].mean() < goal


def test_no_threshold_when_fewer_than_ten_val_images_reach_the_goal():
    confidence = np.linspace(0.99, 0.5, 30)
    correct = np.array([True] * 5 + [False] * 25)  # only 5 confident and right
    threshold, _ = val_threshold(confidence, correct)
    assert threshold > 1


def test_tied_confidences_pass_or_fail_together():
    confidence = np.array([0.9] * 12 + [0.8] * 12)
    correct = np.array([True] * 11 + [False] + [True] * 6 + [False] * 6)
    threshold, goal = val_threshold(confidence, correct)
    assert threshold == 0.9 and goal == pytest.approx((1 + 17 / 24) / 2)


def test_each_class_takes_at_most_its_labelled_share_of_what_passed_keeping_its_most_confident():
    classes = ["a", "b"]
    caps = class_caps(["a"] * 3 + ["b"] * 1, classes, passed=8)
    assert caps == {"a": 6, "b": 2}
    # 8 images pass: 2 predicted a, 6 predicted b (b's cap is 2: its 2 most confident are kept).
    paths = [f"img{i}" for i in range(9)]
    probabilities = np.array(
        [[0.95, 0.05], [0.9, 0.1]] + [[1 - c, c] for c in (0.99, 0.98, 0.97, 0.96, 0.95, 0.94)] + [[0.6, 0.4]]
    )
    chosen = choose(paths, probabilities, classes, threshold=0.9, goal=0.95, train_labels=["a"] * 3 + ["b"])
    assert chosen.passed == 8 and chosen.caps == {"a": 6, "b": 2}
    assert {(p, label) for p, label, _ in chosen.rows} == {("img0", "a"), ("img1", "a"), ("img2", "b"), ("img3", "b")}


def _unlabelled_folder(root, per_class=10):
    """New noisy images of the run's colours, no labels; and the colour each one is."""
    root.mkdir(parents=True)
    truth = {}
    for index, (name, colour) in enumerate({"red": (200, 40, 40), "blue": (40, 40, 200)}.items()):
        for i in range(per_class):
            path = root / f"{name[0]}{i:02d}.jpg"
            colour_image(colour, seed=50_000 + index * 1000 + i).save(path, quality=90)
            truth[path.name] = name
    return root, truth


def test_students_train_on_the_confident_pseudo_labels_and_record_them(tmp_path):
    data = make_class_folders(tmp_path / "colours", per_class=40)
    pool, truth = _unlabelled_folder(tmp_path / "pool")
    out = tmp_path / "run"
    final = imagefit.train(data, out=out, epochs=3, frozen_epochs=1, report=False, unlabelled=pool, **TINY)
    student = tmp_path / "run-student1"
    assert student.is_dir(), "a red/blue run is confident on new red/blue images: a student trains"
    assert final.path in (out, student) or final.path.name.startswith("run-student")
    with (student / "pseudo-labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(truth[row["path"].rsplit("/", 1)[-1]] == row["label"] for row in rows)
    soft = np.array([[float(row[c]) for c in ("blue", "red")] for row in rows])  # the soft labels it trained with
    assert np.allclose(soft.sum(axis=1), 1, atol=1e-4) and (soft.max(axis=1) < 1).all()
    assert [("blue", "red")[i] for i in soft.argmax(axis=1)] == [row["label"] for row in rows]
    assert {row["round"] for row in rows} == {"1"}
    config = json.loads((student / "config.json").read_text())
    assert config["student_of"] == str(out.resolve()) and config["recipe"]["model"]["init_weights"]
    assert config["recipe"]["augment"]["auto_augment"] == "randaugment"
    with (student / "split.csv").open() as handle:
        split = {row["path"]: row["split"] for row in csv.DictReader(handle)}
    assert all(split[row["path"]] == "train" for row in rows)
    assert not (tmp_path / "run-student1-student1").exists(), "a student makes no students of its own"
    page = imagefit.write_report(student).read_text()
    assert 'id="pseudo-labels"' in page and f"{len(rows)} unlabelled images" in page and "teacher run" in page
    assert 'id="pseudo-labels"' not in imagefit.write_report(out).read_text()


def test_unlabelled_none_trains_no_students(tmp_path):
    data = make_class_folders(tmp_path / "colours", per_class=6)
    run = imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False, unlabelled="none", **TINY)
    assert run.path == tmp_path / "run" and not (tmp_path / "run-student1").exists()


def test_init_weights_that_do_not_fit_are_one_line(tmp_path, tiny_run):
    data = make_class_folders(tmp_path / "three", per_class=6, classes=("red", "blue", "green"))
    with pytest.raises(UserError, match="does not fit this model and its classes"):
        imagefit.train(data, out=tmp_path / "run", epochs=2, frozen_epochs=1, report=False,
                       init_weights=str(tiny_run), **TINY)  # fmt: skip


def test_soft_labels_are_the_training_targets_of_pseudo_labelled_images_and_one_hot_elsewhere(tmp_path):
    from imagefit.data import Sample
    from imagefit.data.datamodule import ImageDataset
    from imagefit.training.pseudo import read_soft_labels, write_pseudo_labels

    samples = [Sample("a.jpg", "red", "train"), Sample("b.jpg", "blue", "train"), Sample("c.jpg", "red", "train")]
    soft = {"b.jpg": np.array([0.2, 0.8], dtype=np.float32)}
    write_pseudo_labels(tmp_path / "p.csv", [("b.jpg", "blue", 0.8)], 1, soft, ["red", "blue"])
    read = read_soft_labels(tmp_path / "p.csv", ["red", "blue"])
    assert read.keys() == {"b.jpg"} and np.allclose(read["b.jpg"], [0.2, 0.8])
    dataset = ImageDataset(samples, {"red": 0, "blue": 1}, transform=None, soft=read)
    assert np.allclose(np.stack(dataset.targets), [[1, 0], [0.2, 0.8], [1, 0]])
    assert list(dataset.hard) == [0, 1, 0], "the sampler and class counts use the top class"
    assert list(ImageDataset(samples, {"red": 0, "blue": 1}, transform=None).targets) == [0, 1, 0]


def test_a_student_is_kept_unless_worse_on_val_beyond_noise():
    rng = np.random.default_rng(0)
    teacher = rng.exponential(0.5, size=50)
    noisy = paired_verdict(teacher, teacher + rng.normal(0.05, 0.5, size=50))  # a little worse, within noise
    assert noisy.kept and 0 < noisy.difference < noisy.noise
    worse = paired_verdict(teacher, teacher + 0.3 + rng.normal(0, 0.05, size=50))  # worse on every image
    assert not worse.kept and worse.difference > worse.noise
    spread = paired_verdict(np.zeros(3), np.array([0.0, 1.0, 2.0]))  # differences 0, 1, 2: standard deviation 1
    assert spread.difference == 1.0 and spread.noise == pytest.approx(NOISE_SE / np.sqrt(3))


def _val(probabilities: np.ndarray, truth: list[int]) -> list[dict]:
    return [{"true": "ab"[t], "a": row[0], "b": row[1]} for row, t in zip(probabilities, truth, strict=True)]


def test_students_are_judged_on_val_probabilities_rescaled_as_well_as_val_allows():
    truth = list(np.random.default_rng(1).integers(0, 2, size=40))
    sure = np.where(np.eye(2)[truth] > 0, 0.98, 0.02)  # no mistake: no temperature (calibration.MIN_MISTAKES)
    softer = sure**0.4 / (sure**0.4).sum(1, keepdims=True)  # the same answers, less sure of each
    plain = paired_verdict(-np.log(sure[np.arange(40), truth]), -np.log(softer[np.arange(40), truth]))
    assert not plain.kept and plain.difference > 0.15, "at T = 1 the softer student loses"
    teacher, student = val_losses(_val(sure, truth), ["a", "b"]), val_losses(_val(softer, truth), ["a", "b"])
    assert paired_verdict(teacher, student).kept, "rescaled, the same answers cost the same"
    worse = sure.copy()
    worse[:10] = worse[:10, ::-1]  # ten confident mistakes: worse whatever the scale
    assert not paired_verdict(teacher, val_losses(_val(worse, truth), ["a", "b"])).kept


def test_distill_trains_a_student_on_the_teachers_soft_labels_over_the_same_split(tmp_path, tiny_run):
    pool, _ = _unlabelled_folder(tmp_path / "pool", per_class=4)
    options = {k: v for k, v in TINY.items() if k != "model"}
    student = imagefit.distill(tiny_run, model="test_efficientnet", unlabelled=pool, out=tmp_path / "student",
                               epochs=3, frozen_epochs=1, report=True, **options)  # fmt: skip
    config = json.loads((student.path / "config.json").read_text())
    assert config["distilled_from"] == str(tiny_run.resolve())
    teacher = imagefit.load_run(tiny_run)
    held = {(s.path, s.split) for s in teacher.split() if s.split != "train"}
    assert {(s.path, s.split) for s in student.split() if s.split != "train"} == held, "the same val and test"
    with (student.path / "pseudo-labels.csv").open() as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    labels = {s.path: s.label for s in teacher.split() if s.split == "train"}
    assert set(labels) < set(rows) and len(rows) == len(labels) + 8, "every training image and the 8 unlabelled"
    taught = imagefit.predict(tiny_run, list(labels))  # half the true class, half the teacher's probabilities
    for path, probabilities in zip(taught.paths, taught.probabilities, strict=True):
        expected = 0.5 * (np.array(taught.classes) == labels[path]) + 0.5 * probabilities
        assert [float(rows[path][c]) for c in taught.classes] == pytest.approx(list(expected), abs=1e-5)
    unlabelled = [row for path, row in rows.items() if path not in labels]
    assert all(abs(float(r["red"]) + float(r["blue"]) - 1) < 1e-4 for r in unlabelled)
    page = (student.path / "report.html").read_text()
    assert "Distilled from" in page and "teacher tiny" in page


def test_the_teachers_labelling_counts_against_the_distill_time_limit():
    from io import StringIO

    from rich.console import Console

    from imagefit.training.distill import STUDENT_FLOOR, time_left

    printed = StringIO()
    shared = time_left({"time_limit": "10m", "seed": 1}, 100.0, Console(file=printed))
    assert shared == {"time_limit": "500s", "seed": 1}
    assert "took 100s, 500s left for the student" in printed.getvalue()
    assert time_left({"time-limit": "2m"}, 200.0, Console(file=StringIO())) == {"time-limit": f"{STUDENT_FLOOR:.0f}s"}
    assert time_left({"seed": 1}, 100.0, Console(file=StringIO())) == {"seed": 1}, "no limit: nothing to share"


def test_distill_of_a_folder_that_is_no_run_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from imagefit.cli import app

    result = CliRunner().invoke(app, ["distill", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such run folder" in result.output


def test_the_time_left_goes_to_as_many_student_rounds_as_fit_at_what_a_round_costs():
    # the run took 360 s and 390 s are left: one round fits, and it gets them all (not a third of them)
    assert round_share(390.0, 360.0, 3) == (390.0, 1)
    # room for two rounds of 300 s out of three possible: half each
    assert round_share(650.0, 300.0, 3) == (325.0, 2)
    # room for more than the rounds left: split over those
    assert round_share(900.0, 100.0, 2) == (450.0, 2)
    # less than one round's cost but over half of it: still one round, with what is left
    assert round_share(200.0, 300.0, 3) == (200.0, 1)
    # under half a round's cost, or nothing left: no round
    assert round_share(50.0, 300.0, 3) == (0.0, 0)
    assert round_share(-5.0, 0.0, 3) == (0.0, 0)
    # no measured cost: every round left shares the time
    assert round_share(600.0, 0.0, 3) == (200.0, 3)


def test_the_round_clock_says_its_plan_and_refuses_a_round_it_cannot_afford():
    import io

    from rich.console import Console

    from imagefit.training.round_time import RoundClock

    printed = io.StringIO()
    console = Console(file=printed, width=300)
    assert RoundClock(0.0, cost=100.0, rounds=3).share(1, console) == 0.0  # no limit: no share, nothing said
    assert printed.getvalue() == ""
    share = RoundClock(1000.0, cost=400.0, rounds=3).share(1, console)
    assert 490.0 < share <= 500.0 and "2 round(s) planned" in printed.getvalue()
    clock = RoundClock(1000.0, cost=3000.0, rounds=3)  # a round costs three times what is left
    assert not clock.room(console) and clock.share(1, console) is None
    assert "under half of what a round costs (3000s); no further round" in printed.getvalue()


def _chain_keeps_every_student(monkeypatch):
    """Every student kept (the chain runs its rounds whatever tiny val sets say), two rounds at most, and the
    pseudo-labelling passes counted; the returned list holds the passes at which to interrupt."""
    from imagefit.training import students
    from imagefit.training.pseudo import Verdict

    monkeypatch.setattr(students, "paired_verdict", lambda teacher, student: Verdict(-1.0, 0.0, len(teacher)))
    monkeypatch.setattr(students, "MAX_ROUNDS", 2)
    real, interrupt_at, calls = students.pseudo_label, [], []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) in interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(students, "pseudo_label", counted)
    return interrupt_at, calls


def test_a_chain_interrupted_between_rounds_resumes_at_the_round_it_was_in(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "colours", per_class=40)
    pool, _ = _unlabelled_folder(tmp_path / "pool", per_class=12)
    out = tmp_path / "run"
    interrupt_at, calls = _chain_keeps_every_student(monkeypatch)
    interrupt_at.append(2)  # round 2's labelling pass: student 1 is trained and kept
    with pytest.raises(
        TrainingInterrupted, match=f"--resume {out}` \\(then its students from the round they were in\\)"
    ):
        imagefit.train(data, out=out, epochs=3, frozen_epochs=1, report=False, unlabelled=pool, **TINY)
    first = tmp_path / "run-student1"
    assert (first / "metrics.json").exists() and not (tmp_path / "run-student2").exists()
    weights = runs.RunFiles(first).model.stat().st_mtime_ns
    final = imagefit.train(resume=out, report=False)
    assert len(calls) == 3, "round 1 was not labelled again; round 2 was, again"
    assert runs.RunFiles(first).model.stat().st_mtime_ns == weights, "round 1's student was judged, not trained again"
    assert final.path == tmp_path / "run-student2"
    config = json.loads((out / "config.json").read_text())
    assert config["students"] == {"rounds": 2, "kept": "run-student2"}
    assert json.loads((tmp_path / "run-student2" / "config.json").read_text())["student_of"] == str(first.resolve())
    with pytest.raises(UserError, match="nothing to resume"):
        imagefit.train(resume=out, report=False)


def test_a_student_interrupted_in_training_resumes_and_its_chain_goes_on(tmp_path, monkeypatch):
    from imagefit.training import students

    data = make_class_folders(tmp_path / "colours", per_class=40)
    pool, _ = _unlabelled_folder(tmp_path / "pool", per_class=12)
    out = tmp_path / "run"
    _, calls = _chain_keeps_every_student(monkeypatch)
    real_train = students._train_student

    def stopped_in_round_1(teacher, samples, chosen, round_number, train, *args):
        def interrupted_after_its_head(data, **options):
            if round_number != 1:
                return train(data, **options)
            return train(data, on_stage=_stop_at("fine-tune"), **options)

        return real_train(teacher, samples, chosen, round_number, interrupted_after_its_head, *args)

    monkeypatch.setattr(students, "_train_student", stopped_in_round_1)
    first = tmp_path / "run-student1"
    with pytest.raises(TrainingInterrupted, match=f"--resume {first}`"):
        imagefit.train(data, out=out, epochs=3, frozen_epochs=1, report=False, unlabelled=pool, **TINY)
    assert not (first / "metrics.json").exists() and len(calls) == 1
    monkeypatch.setattr(students, "_train_student", real_train)
    final = imagefit.train(resume=first, report=False)
    assert (first / "metrics.json").exists() and final.path == tmp_path / "run-student2"
    assert len(calls) == 2, "round 1 labelled once, round 2 after the resume"
    assert json.loads((out / "config.json").read_text())["students"] == {"rounds": 2, "kept": "run-student2"}


def test_resume_with_unlabelled_none_finishes_the_run_alone(tmp_path, monkeypatch):
    data = make_class_folders(tmp_path / "colours", per_class=40)
    pool, _ = _unlabelled_folder(tmp_path / "pool", per_class=12)
    out = tmp_path / "run"
    interrupt_at, calls = _chain_keeps_every_student(monkeypatch)
    interrupt_at.append(1)
    with pytest.raises(TrainingInterrupted):
        imagefit.train(data, out=out, epochs=3, frozen_epochs=1, report=False, unlabelled=pool, **TINY)
    with pytest.raises(UserError, match="nothing to resume"):
        imagefit.train(resume=out, report=False, unlabelled="none")
    assert len(calls) == 1 and not (tmp_path / "run-student1").exists()


def _stop_at(stage: str):
    def notify(name: str) -> None:
        if name == stage:
            raise KeyboardInterrupt

    return notify
