"""ONNX Runtime static quantization variants of one run's graph: top-1 agreement with the float graph on val.

python3 benchmarks/int8_variants.py RUN SCRATCH [VARIANT ...]   (default: every variant)
"""

import random
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from imagefit.export.onnx import export_onnx
from imagefit.prediction.batches import map_batches, predict_with
from imagefit.prediction.onnx import OnnxPredictor
from imagefit.runs import load_run

run = load_run(Path(sys.argv[1]))
d = Path(sys.argv[2])
d.mkdir(parents=True, exist_ok=True)
fp = d / "model.onnx"
if not fp.exists():
    export_onnx(run.path, out=fp, overwrite=True)
prep = d / "prepared.onnx"
if not prep.exists():
    quant_pre_process(str(fp), str(prep), skip_symbolic_shape=True)
samples = run.split()
train = [s.path for s in samples if s.split == "train"]
val = [s.path for s in samples if s.split == "val"]
chosen = sorted(random.Random(0).sample(train, 256))
pre = OnnxPredictor.from_file(fp).preprocess
batches = []
map_batches(lambda b: (batches.append(b), np.zeros((len(b), 1), np.float32))[1], pre, chosen, batch_size=16)
ref = predict_with(OnnxPredictor.from_file(fp), val).labels
m = onnx.load(str(prep))
convs = [n.name for n in m.graph.node if n.op_type == "Conv"]
gemm = [n.name for n in m.graph.node if n.op_type in ("Gemm", "MatMul")]
print(len(convs), "convs", gemm, flush=True)


class R(CalibrationDataReader):
    def __init__(self):
        self.it = iter(batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {"images": b}


variants = {
    "minmax": dict(),
    "percentile": dict(calibrate_method=CalibrationMethod.Percentile),
    "entropy": dict(calibrate_method=CalibrationMethod.Entropy),
    "minmax no head/stem": dict(nodes_to_exclude=gemm + convs[:1]),
    "minmax reduce_range": dict(reduce_range=True),
    "minmax s8s8": dict(activation_type=QuantType.QInt8),
    "per-tensor": dict(per_channel=False),
    "per-tensor no head": dict(per_channel=False, nodes_to_exclude=gemm),
    "no depthwise": dict(
        nodes_to_exclude=[
            n.name
            for n in m.graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
    ),
}
which = sys.argv[3:] or list(variants)

for name in which:
    kw = dict(
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8
    )
    kw.update(variants[name])
    out = d / f"{name.replace(' ', '_').replace('/', '_')}.onnx"
    t = time.time()
    quantize_static(str(prep), str(out), R(), **kw)
    import shutil

    shutil.copyfile(fp.with_suffix(".json"), out.with_suffix(".json"))
    import json as j

    f = j.load(open(out.with_suffix(".json")))
    f.pop("unknown", None)
    j.dump(f, open(out.with_suffix(".json"), "w"))
    got = predict_with(OnnxPredictor.from_file(out), val).labels
    print(
        name,
        f"agreement {np.mean([a == b for a, b in zip(got, ref, strict=True)]):.4f}",
        f"{time.time() - t:.0f}s",
        flush=True,
    )
