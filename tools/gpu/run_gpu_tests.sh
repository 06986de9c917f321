#!/usr/bin/env bash
# The GPU tests (tests/test_gpu.py: CUDA FP32 / FP16 against the CPU, CUDA graphs against eager calls, the
# classifier, the EgoHands accuracy pin and the app on a real clip), which CI skips for want of CUDA.
#   bash tools/gpu/run_gpu_tests.sh stage   # on this machine: the real data they read -> .pack/gpu_test_data
#   bash tools/gpu/run_gpu_tests.sh         # on the GPU machine, from the repository root, carrying
#                                                # .pack/gpu_test_data and .whl (wheels the machine lacks, as for
#                                                # device_job.sh: PyAV, pytest, hypothesis); JUnit XML in $OUT
set -euo pipefail
STAGE=.pack/gpu_test_data
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
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD/src:/tmp/site" GESTUREKIT_DATA="$PWD/$STAGE"
nvidia-smi -L
python3 -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py --junitxml "$OUT/gpu_tests.xml"
