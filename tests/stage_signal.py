"""Test helper: run `imagefit train ARGS...` and signal this very process when the run reaches STAGE.

    python tests/stage_signal.py STAGE SIGNAL ARGS...

STAGE is a name `imagefit.train` passes to `on_stage` ("scan", "features", "head", "fine-tune",
"epoch N", "evaluate", "report"); SIGNAL is SIGINT (Ctrl-C) or SIGKILL. The signal is sent from
inside the run at that moment, so a test never races the run's speed. SIGINT is handled as in an
interactive terminal even when this process inherited it ignored (a background job of a script,
as CI runners start them).
"""

import functools
import os
import signal
import sys

import imagefit.training.pipeline
from imagefit import cli


def main() -> None:
    stage, signal_name, *args = sys.argv[1:]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    number = getattr(signal, signal_name)

    def on_stage(name: str) -> None:
        if name == stage:
            os.kill(os.getpid(), number)

    imagefit.training.pipeline.train = functools.partial(imagefit.training.pipeline.train, on_stage=on_stage)
    sys.argv = ["imagefit", "train", *args]
    cli.main()


if __name__ == "__main__":
    main()
