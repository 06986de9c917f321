#!/usr/bin/env bash
# The whole GPU job in one call of the device machine (repository root; carry .whl and .pack/gpu):
# install the carried wheels, train the hand detector and the gesture classifier (one GPU each when
# there are two), then measure training throughput: FP32 vs AMP on one GPU, and 1 vs 2 GPUs (DDP).
# Everything worth keeping is packed into $OUT/results.tgz (checkpoints without optimizer state).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}; RUNS=/tmp/runs; mkdir -p "$OUT" "$RUNS"
TRAIN_LIMIT=${TRAIN_LIMIT:-400}
nvidia-smi -L | tee "$RUNS/gpus.txt"
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$RUNS/gpus.txt"
gk() { python3 -m gesturekit.cli.main "$@"; }

CUDA_VISIBLE_DEVICES=0 timeout "$TRAIN_LIMIT" python3 -m gesturekit.cli.main train detector \
  -e benchmarks/gpu/hand_detector.yaml -r "$RUNS/hand-detector" 'evaluation.datasets=[]' > "$RUNS/detector.log" 2>&1 &
DET=$!
if [ "$NGPU" -lt 2 ]; then wait $DET; fi
CUDA_VISIBLE_DEVICES=$((NGPU - 1)) timeout "$TRAIN_LIMIT" python3 -m gesturekit.cli.main train classifier \
  -e benchmarks/gpu/gesture_classifier.yaml -r "$RUNS/gesture-classifier" 'evaluation.datasets=[]' > "$RUNS/classifier.log" 2>&1 &
CLS=$!
wait $DET; echo "detector exit $?"; wait $CLS; echo "classifier exit $?"
tail -n 4 "$RUNS/detector.log" "$RUNS/classifier.log"

# Throughput: the GPUs are idle again.
TP="benchmarks/train_throughput.py --pack .pack/gpu/det_egohands.gkpack --batch-size 64 --samples 512 --iterations 80"
CUDA_VISIBLE_DEVICES=0 python3 $TP --precisions fp32 bf16 fp16 --out "$RUNS/train_throughput_1gpu.json"
CUDA_VISIBLE_DEVICES=0 python3 $TP --precisions fp32 bf16 --channels-last --out "$RUNS/train_throughput_1gpu_channels_last.json"
if [ "$NGPU" -ge 2 ]; then
  torchrun --standalone --nproc_per_node 2 $TP --precisions bf16 fp32 --out "$RUNS/train_throughput_2gpu.json"
fi

python3 - "$RUNS" <<'PY'
import sys, torch, pathlib
runs = pathlib.Path(sys.argv[1])
for name, file in (("hand-detector", "best.pt"), ("gesture-classifier", "last.pt")):
    src = runs / name / file
    if not src.exists():
        src = runs / name / "last.pt"
    if src.exists():
        state = torch.load(src, map_location="cpu", weights_only=True)
        slim = {k: state[k] for k in ("model", "metadata", "epoch", "best_metric", "spec", "version") if k in state}
        torch.save(slim, runs / name / "model.pt")
PY
cd "$RUNS" && tar czf "$OUT/results.tgz" --exclude='*/tensorboard' --exclude='*/last.pt' --exclude='*/best.pt' .
ls -la "$OUT"
