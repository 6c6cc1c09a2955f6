"""imagefit suggest: uncertain, diverse images to label next; never labelled images or their near duplicates."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folders
from PIL import Image

from imagefit import runs
from imagefit.audit.selection import CANDIDATES_PER_PICK, choose, margins, typical_per_cluster
from imagefit.audit.suggest import COLUMNS, suggest
from imagefit.errors import UserError


def test_margins_are_small_where_the_run_hesitates():
    probabilities = np.array([[0.5, 0.45, 0.05], [0.9, 0.05, 0.05]])
    np.testing.assert_allclose(margins(probabilities), [0.05, 0.85])
    # multi-label: the label closest to its threshold decides
    np.testing.assert_allclose(margins(np.array([[0.9, 0.42], [0.1, 0.95]]), np.array([0.5, 0.4])), [0.02, 0.4])


def test_choose_picks_only_eligible_images_among_the_most_uncertain():
    rng = np.random.default_rng(1)
    count, n = 200, 6
    top = np.linspace(0.34, 0.99, count)
    probabilities = np.stack([top, 1 - top], axis=1)
    eligible = rng.random(count) > 0.3
    choice = choose(probabilities, rng.normal(size=(count, 8)), n, eligible=eligible)
    assert len(choice.indices) == n and len(set(choice.indices)) == n
    assert all(eligible[i] for i in choice.indices)
    uncertain = np.flatnonzero(eligible)[np.argsort(margins(probabilities)[eligible], kind="stable")]
    assert set(choice.indices) <= set(uncertain[: CANDIDATES_PER_PICK * n].tolist())


def test_typical_per_cluster_takes_each_clusters_most_central_member_largest_first():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 10
    offsets = [sign * size * np.eye(4)[axis] for axis in (0, 2, 3) for size in (1, 2, 3) for sign in (1, -1)]
    largest = np.array([centres[1]] + [centres[1] + offset for offset in offsets])  # its centre, then around it
    noisy = [centre + rng.normal(0, 1, (count, 4)) for centre, count in ((centres[0], 8), (centres[2], 12))]
    embeddings = np.concatenate([noisy[0], largest, noisy[1]])
    picked = typical_per_cluster(embeddings, 3)
    assert picked[0] == 8, "the largest cluster first, and of it the member at its centre"
    assert sorted(int(i >= 8) + int(i >= 8 + len(largest)) for i in picked) == [0, 1, 2], "one from each cluster"
    assert typical_per_cluster(np.ones((5, 4)), 3) == [0, 1, 2], "identical vectors: still exactly n picks"


def _copies(paths: list[str], into: Path) -> list[Path]:
    """Re-encoded copies of labelled images (PNG, under new names): near duplicates the hashes must catch."""
    into.mkdir(parents=True)
    copies = [into / f"copy{i:02d}.png" for i in range(len(paths))]
    for source, target in zip(paths, copies, strict=True):
        Image.open(source).save(target)
    return copies


def test_suggest_returns_n_new_images_never_labelled_ones_or_their_copies(tiny_run, tmp_path):
    labelled = [s.path for s in runs.load_run(tiny_run).split()]
    copies = _copies(labelled[:5], tmp_path / "copies")
    new = make_class_folders(tmp_path / "new", per_class=12, first_seed=500)
    (new / "red" / "broken.jpg").write_bytes(b"not a picture")
    result = suggest(tiny_run, [*labelled, tmp_path / "copies", new], n=7)
    chosen = [row[0] for row in result.rows]
    assert len(chosen) == 7 and len(set(chosen)) == 7
    assert not set(chosen) & set(labelled) and not set(chosen) & {str(c.resolve()) for c in copies}
    assert result.skipped["already labelled"] == len(labelled)
    assert result.skipped["near duplicates of labelled images"] == len(copies)
    assert result.skipped["unreadable"] == 1
    assert all(Path(p).is_relative_to(new.resolve()) for p in chosen)
    assert not set(chosen) & {row[0] for row in result.unknown}, "unknown images are listed apart, not suggested"


def test_suggest_from_the_command_line_writes_the_csv_and_refuses_to_overwrite(tiny_run, tmp_path):
    new = make_class_folders(tmp_path / "new", per_class=6, first_seed=700)
    out = tmp_path / "to_label.csv"
    command = [sys.executable, "-m", "imagefit.cli", "suggest", str(tiny_run), str(new), "--n", "4", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS and len(rows) == 4
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists. Pass --overwrite" in again.stderr


def test_a_pool_of_labelled_images_only_is_one_line(tiny_run):
    labelled = [s.path for s in runs.load_run(tiny_run).split()]
    with pytest.raises(UserError, match="no image left to suggest"):
        suggest(tiny_run, labelled[:3], n=2)
