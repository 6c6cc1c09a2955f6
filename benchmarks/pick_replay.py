"""Which prediction settings the rule of stop 51 picks, replayed from the candidates recorded in run folders.

    python3 benchmarks/pick_replay.py results/ --json F

Every `config.json` under the given folders holds the candidates its run scored (`inference_candidates`: size,
views, temperature, val log loss before and after it). Since stop 51 `polish.pick` compares them after their
temperatures only where each candidate was fitted one (3 or more val mistakes); where any was held at T = 1, all
are compared before scaling. Records before stop 51 do not count mistakes: a temperature of exactly 1 marks a
candidate held at 1 (a fitted one is never exactly 1 in practice). The table gives each run's pick by the rule
before stop 51 (what runs before it recorded) and by the rule of stop 51, and whether they differ; test figures
of a changed pick need the model again (`benchmarks/inference_choice.py`, `plain` rule).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imagefit.evaluation.calibration import MIN_MISTAKES
from imagefit.training import polish


def replay(config: dict) -> dict | None:
    candidates = config.get("inference_candidates") or []
    if not candidates or any("val_log_loss_before_scaling" not in c for c in candidates):
        return None
    old = polish.pick(candidates, "val_log_loss")
    marked = [
        c if "val_mistakes" in c else {**c, "val_mistakes": 0 if c["temperature"] == 1.0 else MIN_MISTAKES}
        for c in candidates
    ]
    new = polish.pick(marked)
    return {
        "candidates": len(candidates),
        "held_at_1": sum(c["val_mistakes"] < MIN_MISTAKES for c in marked),
        "compared_by": polish.compared_by(marked),
        "old": (old["size"], old["tta_n"]),
        "new": (new["size"], new["tta_n"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = {}
    for folder in args.folders:
        for path in sorted(folder.rglob("config.json")):
            row = replay(json.loads(path.read_text()))
            if row is not None:
                rows[str(path.parent)] = row
    print("| run | candidates (held at T = 1) | rule before stop 51 | stop 51's rule |")
    print("|---|---|---|---|")
    for run, row in rows.items():
        same = "" if row["new"] == row["old"] else " **differs**"
        counts = f"{row['candidates']} ({row['held_at_1']})"
        print(f"| {run} | {counts} | {_setting(row['old'])} | {_setting(row['new'])}{same} |")
    mixed = [r for r in rows.values() if 0 < r["held_at_1"] < r["candidates"]]
    changed = [run for run, r in rows.items() if r["new"] != r["old"]]
    print(
        f"\n{len(rows)} runs; {sum(r['held_at_1'] == 0 for r in rows.values())} with every candidate fitted a "
        f"temperature, {sum(r['held_at_1'] == r['candidates'] for r in rows.values())} with every one held at 1, "
        f"{len(mixed)} mixed; {len(changed)} change pick: {', '.join(changed) or 'none'}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _setting(pair: tuple[int, int]) -> str:
    return f"{pair[0]} px" + (" + mirror" if pair[1] == 2 else "")


if __name__ == "__main__":
    main()
