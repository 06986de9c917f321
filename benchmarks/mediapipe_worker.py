"""MediaPipe gesture recognizer worker for ``cascade_vs_mediapipe.py``, run by MediaPipe's own venv.

It imports only ``mediapipe``, ``cv2`` and ``numpy`` (never gesturekit), and prints one JSON
object on stdout.

``video VIDEO TASK``: VIDEO running mode (``num_hands=2``) over every frame of ``VIDEO``
decoded with ``cv2.VideoCapture``; reports ``frames``, ``wall_s`` and ``fps``, decode and
BGR->RGB conversion included (the recognizer is created before the clock starts).

``images LIST TASK``: IMAGE running mode per image file listed in ``LIST`` (one path a line);
reports for each image its hands: the pixel bounding box of the 21 landmarks, the top gesture
and its score.
"""

from __future__ import annotations

import json
import sys
import time

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision


def recognizer(task: str, mode: vision.RunningMode) -> vision.GestureRecognizer:
    options = vision.GestureRecognizerOptions(base_options=BaseOptions(model_asset_path=task),
                                              running_mode=mode, num_hands=2)
    return vision.GestureRecognizer.create_from_options(options)


def hands(result: vision.GestureRecognizerResult, width: int, height: int) -> list[dict]:
    """Per hand: landmark box ``[x1, y1, x2, y2]`` in pixels, gesture name and score."""
    out = []
    for landmarks, gestures in zip(result.hand_landmarks, result.gestures):
        xs = np.array([p.x for p in landmarks]) * width
        ys = np.array([p.y for p in landmarks]) * height
        top = gestures[0] if gestures else None
        out.append({
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())],
            "gesture": top.category_name if top else "None",
            "score": float(top.score) if top else 0.0,
        })
    return out


def run_video(path: str, task: str) -> dict:
    rec = recognizer(task, vision.RunningMode.VIDEO)
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames, per_frame = 0, []
    start = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = rec.recognize_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb),
                                         round(frames * 1000 / fps))
        per_frame.append(len(result.gestures))
        frames += 1
    wall = time.perf_counter() - start
    capture.release()
    rec.close()
    return {"frames": frames, "wall_s": wall, "fps": frames / wall,
            "frames_with_hand": sum(1 for n in per_frame if n)}


def run_images(list_path: str, task: str) -> dict:
    rec = recognizer(task, vision.RunningMode.IMAGE)
    results = {}
    with open(list_path, encoding="utf-8") as f:
        paths = [line.strip() for line in f if line.strip()]
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        result = rec.recognize(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        results[path] = hands(result, rgb.shape[1], rgb.shape[0])
    rec.close()
    return {"images": results}


def main() -> None:
    mode, path, task = sys.argv[1:4]
    out = run_video(path, task) if mode == "video" else run_images(path, task)
    out["versions"] = {"mediapipe": mp.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
