"""An exported model in OpenVINO: the same graph and facts as ONNX Runtime reads, compiled for this CPU.

`OpenVinoSession` answers the two calls `OnnxPredictor` makes of an ONNX Runtime session (`get_outputs`,
`run`), so the graph's outputs, the facts beside it and the unknown index are read one way for both
runtimes. It compiles an `.onnx` file directly or the IR (`.xml` + `.bin`) that `imagefit export --format
openvino` writes; torch is never imported on this path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagefit.errors import UserError


@dataclass(frozen=True)
class Output:
    name: str


class OpenVinoSession:
    """A model compiled by OpenVINO for the CPU, with ONNX Runtime's session calls."""

    def __init__(self, path: Path, *, threads: int = 0, precision: str = "f32"):
        try:
            import openvino as ov
        except ImportError:
            raise UserError("--backend openvino needs the openvino package: pip install openvino") from None
        # One request at a time with every core on it (predict sends batches); float32 arithmetic, as the export
        # was checked in: on CPUs with bfloat16 units OpenVINO otherwise computes in bf16 (probabilities 1e-3 off).
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.outputs = [Output(port.get_any_name()) for port in self.compiled.outputs]

    def get_outputs(self) -> list[Output]:
        return self.outputs

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.compiled(feeds)
        return [np.asarray(results[self.compiled.output(name)]) for name in names]
