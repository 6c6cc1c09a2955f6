"""Which prediction settings the rule of stop 51 picks, replayed from the candidates recorded in run folders.

    python3 benchmarks/pick_replay.py results/ --json F

Every `config.json` under the given folders holds the candidates its run scored (`inference_candidates`: size,
views, temperature, val log loss at that temperature). Since stop 51 `polish.pick` compares them by val log loss
at the temperature that fits each best and asks a costlier one to save `polish.FLOOR` nats as well. Where every
candidate was fitted a temperature (3 or more val mistakes, so T != 1), that loss is the recorded one and the new
pick follows from the record alone; a candidate held at T = 1 (under 3 mistakes) needs the model's logits again
(`benchmarks/inference_choice.py`), and the run is listed as such. A run with one candidate keeps it. The table says, for each run, the pick recorded
and the pick of the new rule, and whether they differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imagefit.training import polish


def replay(config: dict) -> dict | None:
    candidates = config.get("inference_candidates") or []
    if not candidates:
        return None
    old = polish.pick(candidates, key="val_log_loss", floor=0.0)
    held = [c for c in candidates if c["temperature"] == 1.0] if len(candidates) > 1 else []
    row = {"candidates": len(candidates), "old": (old["size"], old["tta_n"]), "held_at_1": len(held)}
    if held:
        row["new"] = None
        return row
    if all("val_log_loss_compared" in c for c in candidates):
        new = polish.pick(candidates)
    else:
        new = polish.pick([{**c, "val_log_loss_compared": c["val_log_loss"]} for c in candidates])
    row["new"] = (new["size"], new["tta_n"])
    return row


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
    print("| run | candidates | recorded pick | stop 51's pick |")
    print("|---|---|---|---|")
    for run, row in rows.items():
        new = "needs the logits (a candidate under 3 val mistakes)" if row["new"] is None else _setting(row["new"])
        same = "" if row["new"] is None or row["new"] == row["old"] else " **differs**"
        print(f"| {run} | {row['candidates']} | {_setting(row['old'])} | {new}{same} |")
    decided = [r for r in rows.values() if r["new"] is not None]
    changed = sum(r["new"] != r["old"] for r in decided)
    single = sum(r["candidates"] == 1 for r in rows.values())
    print(
        f"\n{len(rows)} runs ({single} with one candidate); decided from the record: {len(decided)}, of which "
        f"{changed} change pick; {len(rows) - len(decided)} need the logits"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _setting(pair: tuple[int, int]) -> str:
    return f"{pair[0]} px" + (" + mirror" if pair[1] == 2 else "")


if __name__ == "__main__":
    main()
