"""imagefit audit: every planted problem is found, a clean set raises no duplicate or leakage alarm."""

import json
import shutil

import pytest
from conftest import TINY, make_class_folders, need_default_weights, shared_path
from PIL import Image

import imagefit
from imagefit.audit import audit
from imagefit.audit import embeddings as audit_embeddings
from imagefit.data import read_split
from imagefit.data.cache import VectorStore

PER_CLASS = 30


def _real_split(root, *, plant: bool):
    """A train/val copy of hymenoptera photos; with `plant`, every kind of problem the audit looks for."""
    source = shared_path("hymenoptera")
    need_default_weights()
    for split, start in (("train", 0), ("val", PER_CLASS)):
        for label in ("ants", "bees"):
            target = root / split / label
            target.mkdir(parents=True)
            for photo in sorted((source / "train" / label).glob("*.jpg"))[start : start + PER_CLASS // 2]:
                shutil.copy(photo, target / photo.name)
    if not plant:
        return {}
    bees = sorted((root / "train" / "bees").glob("*.jpg"))
    ants = sorted((root / "train" / "ants").glob("*.jpg"))
    planted = {
        "leaked_copy": root / "val" / "ants" / f"copy_{ants[0].name}",
        "resized_copy": root / "val" / "bees" / f"small_{bees[1].name}",
        "conflict": root / "train" / "bees" / f"also_{ants[2].name}",
        "truncated": root / "train" / "ants" / "cut.jpg",
        "text": root / "train" / "bees" / "notes.png",
        "png_as_jpg": root / "train" / "ants" / "really_png.jpg",
    }
    shutil.copy(ants[0], planted["leaked_copy"])
    with Image.open(bees[1]) as photo:
        photo.resize((photo.width * 3 // 4, photo.height * 3 // 4)).save(planted["resized_copy"], quality=80)
    shutil.copy(ants[2], planted["conflict"])
    planted["truncated"].write_bytes(ants[3].read_bytes()[:4000])
    planted["text"].write_text("not a picture")
    with Image.open(ants[4]) as photo:
        photo.save(planted["png_as_jpg"], format="PNG")
    flipped = []
    for bee in bees[5:8]:  # bees filed as ants
        shutil.move(bee, root / "train" / "ants" / f"flipped_{bee.name}")
        flipped.append(str((root / "train" / "ants" / f"flipped_{bee.name}").resolve()))
    planted["flipped"] = flipped
    return planted


def _paths(report, kind):
    return [set(f.paths) for f in report.of_kind(kind)]


def _has(report, kind, *paths):
    wanted = {str(p.resolve()) for p in paths}
    return any(wanted <= found for found in _paths(report, kind))


@pytest.fixture(scope="module")
def planted_audit(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted") / "data"
    planted = _real_split(root, plant=True)
    out = root.parent / "audit"
    report = audit(root, out=out, write_clean=out / "clean.csv", cache_dir=root.parent / "cache")
    return root, planted, report


def test_every_planted_problem_is_found(planted_audit):
    root, planted, report = planted_audit
    ants, bees = root / "train" / "ants", root / "train" / "bees"
    original_ant = next(p for p in ants.glob("*.jpg") if planted["leaked_copy"].name == f"copy_{p.name}")
    assert _has(report, "leakage", planted["leaked_copy"], original_ant)
    assert _has(report, "duplicate", planted["leaked_copy"], original_ant)
    original_bee = next(p for p in bees.glob("*.jpg") if planted["resized_copy"].name == f"small_{p.name}")
    assert _has(report, "near_duplicate", planted["resized_copy"], original_bee)
    assert _has(report, "leakage", planted["resized_copy"], original_bee)
    assert _has(report, "conflicting_label", planted["conflict"])
    assert _has(report, "corrupt", planted["truncated"]) and _has(report, "corrupt", planted["text"])
    assert _has(report, "wrong_extension", planted["png_as_jpg"])


def test_flipped_labels_rank_among_the_top_label_issues(planted_audit):
    _, planted, report = planted_audit
    top = [f.paths[0] for f in report.of_kind("label_issue")][:10]
    found = sum(path in top for path in planted["flipped"])
    print(f"planted mislabels in the top 10 label issues: {found} of {len(planted['flipped'])}")
    assert found >= 2


def test_audit_files_and_clean_manifest(planted_audit, tmp_path):
    root, planted, report = planted_audit
    stored = json.loads((report.out_dir / "audit.json").read_text())
    assert stored["counts"]["leakage"] >= 2
    assert {"kind", "paths", "score", "detail"} == set(stored["findings"][0])
    assert stored["findings"][0]["kind"] == "leakage", "leakage is printed first"
    page = (report.out_dir / "audit.html").read_text()
    assert 'id="leakage"' in page and "data:image/jpeg;base64" in page
    clean = read_split(report.out_dir / "clean.csv")
    kept = {s.path for s in clean}
    assert str(planted["leaked_copy"].resolve()) not in kept and str(planted["resized_copy"].resolve()) not in kept
    assert str(planted["truncated"].resolve()) not in kept
    run = imagefit.train(
        report.out_dir / "clean.csv", out=tmp_path / "run", epochs=1, frozen_epochs=1, report=False, **TINY
    )
    assert run.metrics["val"]["count"] == sum(s.split == "val" for s in clean)


def test_clean_real_photos_raise_no_duplicate_or_leakage_alarm(tmp_path):
    root = tmp_path / "data"
    _real_split(root, plant=False)
    report = audit(root, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    for kind in ("leakage", "duplicate", "near_duplicate", "conflicting_label", "corrupt"):
        assert report.counts[kind] == 0, kind


def test_fast_audit_without_a_model_and_train_warns_about_leakage(tmp_path, capsys):
    data = make_class_folders(tmp_path / "d", per_class=6, split="train")
    make_class_folders(tmp_path / "d", per_class=2, split="val", first_seed=500)
    shutil.copy(data / "train" / "red" / "005.jpg", data / "val" / "red" / "leaked.jpg")
    report = audit(data, out=tmp_path / "audit", embeddings=False)
    assert report.counts["leakage"] == 1 and report.counts["label_issue"] == 0
    from rich.console import Console

    console = Console(file=open(tmp_path / "log.txt", "w"), width=200)  # noqa: SIM115
    imagefit.train(data, out=tmp_path / "run", epochs=1, frozen_epochs=1, report=False, console=console, **TINY)
    console.file.close()
    assert "1 identical images in train and val/test; see `imagefit audit" in (tmp_path / "log.txt").read_text()


def test_embeddings_are_cached_by_content(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=4)
    need_default_weights()
    audit(data, out=tmp_path / "a", cache_dir=tmp_path / "cache")
    (space,) = VectorStore(tmp_path / "cache").info()
    assert (space.kind, space.rows) == ("embeddings", 8)
    computed = []
    original = audit_embeddings.map_batches
    audit_embeddings.map_batches = lambda *a, **k: computed.append(1) or original(*a, **k)
    try:
        audit(data, out=tmp_path / "b", cache_dir=tmp_path / "cache")
    finally:
        audit_embeddings.map_batches = original
    assert computed == [], "a second audit of the same files computes nothing"


def test_hymenoptera_placeholder_is_the_top_outlier(tmp_path):
    data = shared_path("hymenoptera")
    need_default_weights()
    report = audit(data, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    assert report.of_kind("outlier")[0].paths[0].endswith("imageNotFound.gif")
    assert report.counts["corrupt"] == 0 and report.counts["leakage"] == 0


def test_audit_with_a_trained_run_embeds_with_its_model(tiny_run, tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=8)
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    report = audit(data, run=run_dir, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    (space,) = VectorStore(tmp_path / "cache").info()
    assert space.space.startswith("embeddings-run-") and space.rows == 16
    assert report.counts["duplicate"] == 0 and len(report.of_kind("outlier")) == 1
    from safetensors.torch import load_file, save_file

    weights = load_file(run_dir / "model.safetensors")
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in weights.items()}, run_dir / "model.safetensors")
    audit(data, run=run_dir, out=tmp_path / "audit2", cache_dir=tmp_path / "cache")
    assert len(VectorStore(tmp_path / "cache").info()) == 2, "retrained weights in the same folder: new embeddings"


def test_re_encoded_and_grey_copies_in_val_are_leakage(tmp_path):
    root = tmp_path / "d"
    _real_split(root, plant=False)
    ants = sorted((root / "train" / "ants").glob("*.jpg"))
    copies = {
        root / "val" / "ants" / "small_q70.jpg": lambda im: im.resize((im.width * 3 // 4, im.height * 3 // 4)),
        root / "val" / "ants" / "grey.jpg": lambda im: im.convert("L"),
    }
    originals = {}
    for (target, edit), original in zip(copies.items(), ants[:2], strict=True):
        with Image.open(original) as photo:
            edit(photo).save(target, quality=70)
        originals[target] = original
    report = audit(root, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    for target, original in originals.items():
        assert _has(report, "leakage", target, original), f"{target.name} is a copy of {original.name}"


@pytest.mark.parametrize("altered", [False, True])
def test_shift_is_near_half_for_a_random_split_and_near_one_for_altered_val_images(tmp_path, altered):
    from PIL import ImageFilter

    root = tmp_path / "d"
    _real_split(root, plant=False)
    if altered:  # another camera: grey and soft
        for photo in (root / "val").rglob("*.jpg"):
            with Image.open(photo) as image:
                changed = image.convert("L").filter(ImageFilter.GaussianBlur(3))
            changed.save(photo)
    report = audit(root, out=tmp_path / "audit", cache_dir=tmp_path / "cache")
    (shift,) = report.of_kind("shift")
    assert shift.detail["compared"] == "train vs val"
    if altered:
        assert shift.score > 0.9 and report.counts["shift"] == 1
        assert all("/val/" in path for path in shift.paths), "the images that explain it are the altered ones"
    else:
        assert shift.score < 0.75 and report.counts["shift"] == 0
