"""Every command checks its arguments before importing torch: a wrong path or option answers at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from imagefit.cli import main
sys.argv = ["imagefit", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    print("exit", exc.code, "torch" in sys.modules, "lightning" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["train", "/nonexistent/data"], "no such file or folder"),
        (["train", "--resume", "/nonexistent/run"], "nothing to resume"),
        (["train", "DATA", "--epochs", "many"], "expects int"),
        (["predict", "/nonexistent/run", "x.jpg"], "no such run folder. Pass the folder `imagefit train` printed"),
        (["predict", "/nonexistent/model.onnx", "x.jpg"], "no such ONNX model. Make one with `imagefit export"),
        (["predict", "RUN", "/nonexistent/image.jpg"], "no such file or folder"),
        (["evaluate", "/nonexistent/run"], "no such run folder"),
        (["export", "/nonexistent/run"], "no such run folder"),
        (["report", "/nonexistent/run"], "no such run folder"),
        (["explain", "/nonexistent/run", "x.jpg"], "no such run folder"),
        (["refit", "/nonexistent/run"], "no such run folder"),
        (["audit", "/nonexistent/data"], "no such file or folder"),
        (["lr-find", "/nonexistent/data"], "no such file or folder"),
    ],
)
def test_a_wrong_argument_is_said_before_torch_is_imported(args, said, tmp_path):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    args = [str(data) if a == "DATA" else str(run) if a == "RUN" else a for a in args]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert said in result.stderr, result.stderr[-1500:]
    assert result.stdout.split() == ["exit", "2", "False", "False"], result.stdout + result.stderr[-1500:]
