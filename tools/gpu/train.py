"""Train a zoo model on the GPU machine without the full CLI (which also imports the inference stack).

    torchrun --standalone --nproc_per_node N tools/gpu/train.py detector SPEC RESULTS [KEY=VALUE ...]
"""

import sys

from gesturekit.config.base import load_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.training.classifier import train_classifier
from gesturekit.training.detector import train_detector

task, spec_path, results, *overrides = sys.argv[1:]
overrides = ["evaluation.datasets=[]", *overrides]  # evaluation data stays on the CPU machine
if task == "detector":
    train_detector(load_spec(spec_path, DetectorSpec, overrides), results)
else:
    train_classifier(load_spec(spec_path, ClassifierSpec, overrides), results)
