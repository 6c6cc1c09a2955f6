"""Peak resident memory of `imagefit train` by stage: the main process, its largest child (loader workers), all.

    python3 benchmarks/memory_by_stage.py DATA OUT [recipe=value ...]

A thread samples /proc every 0.1 s; the stage is the one `imagefit.train` last named to `on_stage`
(fine-tuning epochs together as "epoch"). "all" adds the processes' RSS, so pages they share
(forked workers) count once per process.
"""

import os
import sys
import threading
import time

import imagefit


def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1e6
    except OSError:
        return 0.0
    return 0.0


def children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
    except OSError:
        pass
    return out


def main() -> None:
    stage = ["start"]
    peaks: dict[str, tuple[float, float, float]] = {}

    def sample() -> None:
        me = os.getpid()
        while True:
            main_rss = rss(me)
            kids = [rss(c) for c in children(me)]
            m, k, total = peaks.get(stage[0], (0.0, 0.0, 0.0))
            peaks[stage[0]] = (max(m, main_rss), max(k, max(kids, default=0.0)), max(total, main_rss + sum(kids)))
            time.sleep(0.1)

    def on_stage(name: str) -> None:
        stage[0] = "epoch" if name.startswith("epoch") else name
        print(f"{time.strftime('%T')} stage {name}", file=sys.stderr, flush=True)

    threading.Thread(target=sample, daemon=True).start()
    extra = dict(a.split("=", 1) for a in sys.argv[3:])
    imagefit.train(sys.argv[1], out=sys.argv[2], report=False, on_stage=on_stage, **extra)
    time.sleep(0.3)
    print("| stage | main process | largest child | all processes |")
    print("|---|---|---|---|")
    for key, (m, k, t) in peaks.items():
        print(f"| {key} | {m:.2f} GB | {k:.2f} GB | {t:.2f} GB |")


if __name__ == "__main__":
    main()
