#!/usr/bin/env bash
# The GPU tests (tests/test_gpu.py: CUDA FP32 / FP16 against the CPU, CUDA graphs against eager calls, the
# classifier, the EgoHands accuracy pin and the app on a real clip), which CI skips for want of CUDA.
#   bash tools/gpu/run_gpu_tests.sh stage   # on this machine: the real data they read -> .pack/gpu_test_data
#   bash tools/gpu/run_gpu_tests.sh wheels  # on this machine: what the GPU machine lacks -> .whl (pydantic and its
#                                           # companions, torch-pruning, faster-coco-eval: 3 MB) and .whl-av (PyAV,
#                                           # 36 MB, for the app test: it fits a call only with the zoo's INT8 and
#                                           # pruned entries out of the tree, so it travels in a call of its own:
#                                           # mkdir -p /tmp/keep && cp .whl-av/*.whl /tmp/keep/)
#   bash tools/gpu/run_gpu_tests.sh         # on the GPU machine, from the repository root, carrying
#                                           # .pack/gpu_test_data and .whl; JUnit XML in $OUT
set -euo pipefail
STAGE=.pack/gpu_test_data
if [ "${1:-run}" = wheels ]; then
  version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
  download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$@"
  }
  for folder in .whl .whl-av; do grep -qx "/$folder/" .git/info/exclude || echo "/$folder/" >> .git/info/exclude; done
  download .whl "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" annotated-types \
    typing-inspection "torch-pruning==$(version torch-pruning)" "faster-coco-eval==$(version faster-coco-eval)"
  download .whl-av "av==$(version av)"
  du -sh .whl .whl-av
  exit 0
fi
if [ "${1:-run}" = stage ]; then
  D=${GESTUREKIT_DATA:-../shared/data}
  rm -rf "$STAGE" && mkdir -p "$STAGE/egohands/images" "$STAGE/video" "$STAGE/hagrid/crops"
  cp "$D/egohands/test_labels.csv" "$STAGE/egohands/"
  tail -n +2 "$D/egohands/test_labels.csv" | cut -d, -f1 | sort -u | while read -r f; do
    cp "$D/egohands/images/$f" "$STAGE/egohands/images/"
  done
  cp "$D/video/nvgesture_sk_color.avi" "$D/video/nvgesture_bboxes.json" "$STAGE/video/"
  for folder in "$D"/hagrid/crops/*/; do  # the last 10 crops of each folder, as the test reads them
    name=$(basename "$folder") && mkdir -p "$STAGE/hagrid/crops/$name"
    find "$folder" -maxdepth 1 -type f | sort | tail -n 10 | xargs -I{} cp {} "$STAGE/hagrid/crops/$name/"
  done
  du -sh "$STAGE"
  exit 0
fi
OUT=${OUT:-/tmp/out} && mkdir -p "$OUT"
wheels=$(ls .whl/*.whl /tmp/keep/av-*.whl 2>/dev/null || true)
if [ -n "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels
fi
export PYTHONPATH="$PWD/src:/tmp/site" GESTUREKIT_DATA="$PWD/$STAGE"
nvidia-smi -L
python3 -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py --junitxml "$OUT/gpu_tests.xml"
