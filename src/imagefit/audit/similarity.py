"""Findings from embeddings: near duplicates (and the leakage and label conflicts they reveal),
likely label errors (cleanlab on out-of-fold probabilities) and outliers (cleanlab)."""

from __future__ import annotations

import numpy as np

from imagefit.audit.neighbours import Neighbours
from imagefit.data.checks import Finding, related_findings
from imagefit.data.sources import Sample
from imagefit.tasks import task_for

# Two different files count as the same picture (re-encoded, resized, recoloured, lightly cropped)
# when their lite0 embeddings have cosine >= NEAR_DUPLICATE_SIMILARITY, or their pHashes differ in at
# most PHASH_DISTANCE bits and the cosine is still >= PHASH_SIMILARITY (look-alike product shots on
# white share pHashes but not embeddings), or the pHashes differ in at most STRICT_PHASH bits
# (greyscale copies, whose colour embeddings drift). Measured in benchmarks/RESULTS.md.
NEAR_DUPLICATE_SIMILARITY = 0.95
PHASH_DISTANCE = 8
PHASH_SIMILARITY = 0.90
STRICT_PHASH = 4
NEIGHBOURS = 5
OUTLIER_NEIGHBOURS = 10  # cleanlab's own k for its outlier score on features
OUTLIER_SHARE = 0.005


def near_duplicate_findings(
    vectors: np.ndarray,
    samples: list[Sample],
    hashes: list[str],
    phashes: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Finding]:
    """Pairs of different files that show the same picture: by embeddings (nearest neighbours) and pHash.

    `phashes` is (hashes, valid) from `perceptual_hashes` of the same samples; see the rule above.
    """
    from imagefit.audit.phash import close_pairs

    pairs: dict[tuple[int, int], dict] = {}
    if len(samples) > 1:
        distances, indices = Neighbours(NEIGHBOURS).fit(vectors).kneighbors()
        for i, j in zip(*np.nonzero(1.0 - distances >= NEAR_DUPLICATE_SIMILARITY), strict=True):
            j = int(indices[i, j])
            pairs[(min(int(i), j), max(int(i), j))] = {}
    if phashes is not None:
        for i, j, bits in close_pairs(*phashes, max(PHASH_DISTANCE, STRICT_PHASH)):
            similar = float(vectors[i] @ vectors[j]) >= PHASH_SIMILARITY
            if bits <= STRICT_PHASH or (bits <= PHASH_DISTANCE and similar):
                pairs[(i, j)] = {"phash_bits": bits}
    found = []
    for (i, j), detail in sorted(pairs.items()):
        if hashes[i] == hashes[j]:  # byte-identical: reported as `duplicate`
            continue
        similarity = round(float(vectors[i] @ vectors[j]), 4)
        members = [samples[i], samples[j]]
        found.append(Finding("near_duplicate", [m.path for m in members], score=similarity, detail=detail))
        found += related_findings(members, similarity=similarity)
    return found


def label_issue_findings(
    vectors: np.ndarray,
    samples: list[Sample],
    classes: list[str],
    probabilities: np.ndarray | None = None,
    *,
    task: str = "single-label",
) -> list[Finding]:
    """Likely mislabelled images, most likely first: the task finds them (cleanlab's find_label_issues on
    out-of-fold probabilities; multi-label: a label too many or too few)."""
    issues = task_for(task).label_issues(vectors, [s.label for s in samples], classes, probabilities)
    return [
        Finding(
            "label_issue",
            [samples[issue.index].path],
            score=issue.score,
            detail={"label": samples[issue.index].label, "suggested": issue.suggested},
        )
        for issue in issues
    ]


def outlier_findings(vectors: np.ndarray, samples: list[Sample], share: float = OUTLIER_SHARE) -> list[Finding]:
    """The images least like any other (cleanlab's out-of-distribution score on embeddings), lowest first."""
    from cleanlab.outlier import OutOfDistribution

    if len(samples) < 2:
        return []
    search = Neighbours(min(OUTLIER_NEIGHBOURS, len(samples) - 1)).fit(vectors)
    scores = OutOfDistribution(params={"knn": search}).score(features=vectors)
    count = max(1, round(share * len(samples)))
    return [
        Finding("outlier", [samples[i].path], score=round(float(scores[i]), 4), detail={"label": samples[i].label})
        for i in np.argsort(scores)[:count]
    ]


def shift_finding(vectors: np.ndarray, samples: list[Sample]) -> list[Finding]:
    """`shift`: how well a domain classifier tells training embeddings from val/test ones (evaluation.shift)."""
    from imagefit.evaluation.shift import WARN_AUC, domain_shift

    train = [i for i, s in enumerate(samples) if s.split in ("", "train")]
    others = [i for i, s in enumerate(samples) if s.split in ("val", "test")]
    compared = "train vs " + "/".join(sorted({samples[i].split for i in others}))
    shift = domain_shift(
        vectors[train],
        vectors[others],
        train_labels=[samples[i].label for i in train],
        other_labels=[samples[i].label for i in others],
        compared=compared,
    )
    if shift is None:
        return []
    unlike = [others[i] for i, _ in shift.most_unlike]
    detail = {
        "compared": shift.compared,
        "auc": shift.auc,
        "differs": shift.auc >= WARN_AUC,
        "per_class_auc": shift.per_class,
        "most_unlike": [{"path": samples[others[i]].path, "distance": d} for i, d in shift.most_unlike],
    }
    return [Finding("shift", [samples[i].path for i in unlike], score=shift.auc, detail=detail)]
