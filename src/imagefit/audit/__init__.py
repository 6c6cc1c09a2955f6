"""`imagefit audit`: find what is wrong with a dataset before training. It never moves or deletes a file.

Writes OUT/audit.json (each finding: kind, paths, score, detail), OUT/audit.html (thumbnails
grouped by kind) and, with `write_clean`, a path,label,split manifest that `imagefit train` takes.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imagefit.data import Sample, scan, write_split
from imagefit.data.checks import KINDS, Finding, fast_findings, stats_finding
from imagefit.data.decode import UNREADABLE, open_image
from imagefit.data.sources import locator_name
from imagefit.files import output_folder, refuse_overwrite
from imagefit.report.page import PAGE, section, table, thumbnail
from imagefit.runs import dataset_name

SHOWN_PER_KIND = 24


@dataclass
class AuditReport:
    """All findings, most dangerous kind first, and where the report files are."""

    findings: list[Finding]
    out_dir: Path

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def counts(self) -> dict[str, int]:
        # A shift finding is always made (its AUC is worth reading); it counts as a problem when the splits differ.
        counted = Counter(
            f.kind
            for f in self.findings
            if f.kind not in ("imbalance", "stats") and (f.kind != "shift" or f.detail.get("differs"))
        )
        return {kind: counted.get(kind, 0) for kind in KINDS if kind not in ("imbalance", "stats")}


def audit(
    data: str | Path,
    *,
    run: str | Path | None = None,
    out: str | Path | None = None,
    write_clean: str | Path | None = None,
    embeddings: bool = True,
    cache_dir: Path | None = None,
    console: Console | None = None,
    overwrite: bool = False,
) -> AuditReport:
    """Audit DATA (any input `imagefit train` takes); `run` uses a trained run's model for the embeddings.

    `write_clean` never replaces the input, nor an existing file unless `overwrite`.
    """
    console = console or Console(stderr=True)
    if write_clean:  # before the work, not after it
        refuse_overwrite(Path(write_clean), overwrite=overwrite, option="--write-clean", inputs=(Path(data),))
    inventory = scan(Path(data))
    samples = inventory.samples
    findings = fast_findings(inventory, samples) + [stats_finding(inventory)]
    if embeddings:
        findings += _model_findings(inventory, run, cache_dir)
    findings.sort(key=lambda f: (KINDS.index(f.kind), -(f.score or 0.0) if f.kind != "outlier" else f.score or 0))
    out_dir = output_folder(Path(out) if out else Path("audits") / dataset_name(Path(data)))
    report = AuditReport(findings, out_dir)
    (out_dir / "audit.json").write_text(
        json.dumps(
            {
                "data": str(Path(data).resolve()),
                "images": len(samples),
                "counts": report.counts,
                "findings": [f.to_dict() for f in findings],
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    (out_dir / "audit.html").write_text(_page(report, str(data)), encoding="utf-8")
    if write_clean:
        write_split(Path(write_clean), clean_samples(samples, findings))
    _print_summary(report, console)
    return report


def _model_findings(inventory, run, cache_dir) -> list[Finding]:
    from imagefit.audit.embeddings import embed, embedding_model
    from imagefit.audit.phash import perceptual_hashes
    from imagefit.audit.similarity import (
        label_issue_findings,
        near_duplicate_findings,
        outlier_findings,
        shift_finding,
    )

    samples = inventory.samples
    hashes = [inventory.hashes[s.path] for s in samples]
    median_side = int(np.median([min(inventory.facts[s.path].width, inventory.facts[s.path].height) for s in samples]))
    model, preprocess, cache_name = embedding_model(Path(run) if run else None, median_side=median_side)
    vectors = embed(
        [s.path for s in samples],
        hashes,
        model,
        preprocess,
        cache_name=cache_name,
        cache_dir=cache_dir,
    )
    phashes = perceptual_hashes([s.path for s in samples])
    return (
        near_duplicate_findings(vectors, samples, hashes, phashes)
        + label_issue_findings(vectors, samples, inventory.classes, task=inventory.task)
        + outlier_findings(vectors, samples)
        + shift_finding(vectors, samples)
    )


def clean_samples(samples: list[Sample], findings: list[Finding]) -> list[Sample]:
    """Samples without exact duplicates (one copy kept, train's first) and with leaked copies kept in train only."""
    drop: set[str] = set()
    by_path = {s.path: s for s in samples}
    for finding in findings:
        members = [by_path[p] for p in finding.paths if p in by_path]
        if finding.kind == "leakage":
            drop |= {m.path for m in members if m.split in ("val", "test")}
        elif finding.kind == "duplicate":
            keep = sorted(members, key=lambda m: (m.split not in ("", "train"), m.path))[0]
            drop |= {m.path for m in members if m.path != keep.path}
    return [s for s in samples if s.path not in drop]


def _print_summary(report: AuditReport, console: Console) -> None:
    summary = Table(title="imagefit audit")
    summary.add_column("finding")
    summary.add_column("count", justify="right")
    summary.add_column("example")
    for kind, count in report.counts.items():
        example = report.of_kind(kind)[0].paths[0] if count else ""
        style = "bold red" if kind == "leakage" and count else None
        summary.add_row(kind, str(count), locator_name(example) if example else "", style=style)
    console.print(summary)
    for shift in report.of_kind("shift"):
        verdict = "they differ: see the images in audit.html" if shift.detail["differs"] else "alike"
        console.print(f"shift ({shift.detail['compared']}): domain AUC {shift.score:.2f}, {verdict}", highlight=False)
    (imbalance,) = report.of_kind("imbalance")
    console.print(
        f"imbalance: largest/smallest class = {imbalance.detail['ratio']}x; train will use "
        f"{imbalance.detail['train_will_use']}",
        highlight=False,
    )
    if "no_label" in imbalance.detail:  # multi-label data
        together = "; ".join(" + ".join(pair) for pair in imbalance.detail["always_together"]) or "none"
        console.print(
            f"multi-label: {imbalance.detail['no_label']} training images with no label; labels always together: "
            f"{together}",
            highlight=False,
        )
    console.print(f"audit: {report.out_dir / 'audit.html'}", highlight=False)


def _card(path: str, caption: str) -> str:
    try:
        picture = f'<img src="{thumbnail(open_image(path), 120)}" alt="{html.escape(locator_name(path))}">'
    except UNREADABLE:
        picture = "<div class='unreadable'>unreadable</div>"
    return f"<figure>{picture}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _page(report: AuditReport, data: str) -> str:
    parts = [section("counts", "Findings", table(["finding", "count"], [[k, v] for k, v in report.counts.items()]))]
    for kind in report.counts:
        found = report.of_kind(kind)
        if not found:
            continue
        cards = []
        for finding in found[:SHOWN_PER_KIND]:
            label = f"{kind} {finding.score if finding.score is not None else ''} {json.dumps(finding.detail)}"
            cards.append(
                '<div class="gallery">'
                + "".join(_card(p, locator_name(p)) for p in finding.paths[:4])
                + f"<p>{html.escape(label)}</p></div>"
            )
        parts.append(section(kind, f"{kind} ({len(found)})", "".join(cards)))
    (imbalance,) = report.of_kind("imbalance")
    counts = imbalance.detail["counts"]
    parts.append(
        section(
            "imbalance",
            f"imbalance (ratio {imbalance.detail['ratio']})",
            table(["class", "training images"], [[c, n] for c, n in counts.items()])
            + _multi_label_facts(imbalance.detail),
        )
    )
    (stats,) = report.of_kind("stats")
    rows = [
        [c, v["images"], v["median_size"], v["min_side"], v["aspect_ratio_range"], v["modes"], v["formats"]]
        for c, v in stats.detail["per_class"].items()
    ]
    parts.append(
        section(
            "stats",
            "Image statistics per class",
            table(["class", "images", "median size", "min side", "aspect", "modes", "formats"], rows),
        )
    )
    return PAGE.format(title=html.escape(f"imagefit audit: {data}"), body="\n".join(parts))


def _multi_label_facts(detail: dict) -> str:
    """A multi-label audit's images with no label and labels that always come together, as HTML."""
    if "no_label" not in detail:
        return ""
    together = ", ".join(" + ".join(pair) for pair in detail["always_together"]) or "none"
    return (
        f"<p>Training images with no label: {detail['no_label']}. "
        f"Labels that always come together (the same images carry both): {html.escape(together)}.</p>"
    )
