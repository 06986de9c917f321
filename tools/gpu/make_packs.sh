#!/usr/bin/env bash
# Build the compact training packs that travel to the GPU machine (about 60 MB under .pack/gpu),
# and the KITTI datasets under work/ that evaluation reads. Run from the repository root.
set -euo pipefail
D=${GESTUREKIT_DATA:-../shared/data}
mkdir -p work .pack/gpu
gesturekit data convert --format egohands-csv "$D/egohands" -o work/egohands --overwrite
gesturekit data convert --format hagrid "$D/hagrid" -o work/hagrid_hand --class-map-preset hagrid-hand --overwrite
gesturekit data convert --format hagrid "$D/hagrid" -o work/hagrid_gesture --class-map-preset hagrid-gesturenet --overwrite
gesturekit data convert --format yolo "$D/hands_yolo" -o work/hands_yolo --overwrite
gesturekit data convert --format yolo "$D/fingers_yolo" -o work/fingers_yolo --overwrite \
  --class-map five=hand,four=hand,one=hand,three=hand,two=hand
P="--quality 80"
gesturekit data pack work/egohands -o .pack/gpu/det_egohands.gkpack --splits train --max-size 512 $P
gesturekit data pack work/hagrid_hand -o .pack/gpu/det_hagrid_hand.gkpack --splits val --max-size 512 $P
# the 32 HaGRID val frames that show an idle (no_gesture) hand (experiments/hand_detector_v6/hand_detector_v6_idle.yaml)
python3 - "$D/hagrid" <<'PY'
import sys
from pathlib import Path
from gesturekit.data.formats.hagrid import read_hagrid
idle = {a.image.name for a in read_hagrid(sys.argv[1])["val"] if any(b.label == "no_gesture" for b in a.boxes)}
val = Path("work/hagrid_hand/splits/val.txt").read_text().split()
Path("work/hagrid_hand/splits/val_idle.txt").write_text("".join(f"{name}\n" for name in val if name in idle))
PY
gesturekit data pack work/hagrid_hand -o .pack/gpu/det_hagrid_idle.gkpack --splits val_idle --max-size 512 $P
gesturekit data pack work/hands_yolo -o .pack/gpu/det_hands_yolo.gkpack --splits train,val --max-size 288 --quality 72
gesturekit data pack work/fingers_yolo -o .pack/gpu/det_fingers_yolo.gkpack --splits train,val --max-size 224 $P
# tight HaGRID crops of all 13 gestures for the detector's copy-paste augmentation
gesturekit data pack "$D/hagrid/crops" --kind classification --max-size 72 --max-per-class 500 --holdout 0.15 \
  --seed 0 --splits train --quality 75 -o .pack/gpu/paste_crops.gkpack
# HaGRID like / dislike crops only (experiments/hand_detector_v3/hand_detector_pruned_paste_thumbs.yaml)
mkdir -p work/thumbs_crops && ln -sfn "$(realpath "$D/hagrid/crops/like")" work/thumbs_crops/like \
  && ln -sfn "$(realpath "$D/hagrid/crops/dislike")" work/thumbs_crops/dislike
gesturekit data pack work/thumbs_crops --kind classification --max-size 72 --max-per-class 1000 --holdout 0.15 \
  --seed 0 --splits train --quality 75 -o .pack/gpu/paste_thumbs.gkpack
CROPS="$D/hagrid/crops --kind classification --max-size 96 --class-map-preset hagrid-gesturenet --holdout 0.15 --seed 0"
gesturekit data pack $CROPS --max-per-class 1100 --splits train --quality 75 -o .pack/gpu/cls_crops.gkpack   # v2
# gesture_classifier.yaml (v3): every training crop of the six gesture folders, the seven random ones capped at 1,100
# (550: experiments/gesture_classifier_candidates/gesture_classifier_balanced.yaml); the seeded hold-out is the same, as it goes by folder name
mkdir -p work/crops_gesture work/crops_other
for g in like fist palm stop ok peace; do ln -sfn "$(realpath "$D/hagrid/crops/$g")" "work/crops_gesture/$g"; done
for g in call dislike mute none one rock stop_inverted; do ln -sfn "$(realpath "$D/hagrid/crops/$g")" "work/crops_other/$g"; done
OPTS="--kind classification --max-size 96 --class-map-preset hagrid-gesturenet --holdout 0.15 --seed 0 --splits train --quality 75"
gesturekit data pack work/crops_gesture $OPTS -o .pack/gpu/cls_crops_gesture.gkpack
gesturekit data pack work/crops_other $OPTS --max-per-class 1100 -o .pack/gpu/cls_crops_other.gkpack
gesturekit data pack work/crops_other $OPTS --max-per-class 550 -o .pack/gpu/cls_crops_other550.gkpack
gesturekit data pack $CROPS --splits test --quality 90 -o .pack/cls_crops_test.gkpack   # evaluation only
gesturekit data pack work/hagrid_gesture -o .pack/gpu/cls_frames.gkpack --kind classification --splits val \
  --max-size 160 --quality 85 --context 2.5
# hand verifier (hand_verifier.yaml): each detector training split with up to 3 false positives per image that
# the two app detectors make at score >= 0.05 (gesturekit data mine), cut with 2x context (the verifier's 2.0x crops
# jitter to 2.4x, clipped at the pack's edge: 3x-context packs were no better, experiments/hand_verifier/result.json)
for ds in egohands:train hagrid_hand:val hands_yolo:train fingers_yolo:train; do
  name=${ds%%:*} split=${ds##*:}
  gesturekit data mine "work/$name" --split "$split" -m hand-detector -m hand-detector-pruned-int8 \
    --max-per-image 3 -o "work/verifier/$name" --overwrite
  gesturekit data pack "work/verifier/$name" --kind classification --splits "$split" --max-size 96 --context 2.0 \
    --quality 80 -o ".pack/gpu/ver_$name.gkpack"
done
