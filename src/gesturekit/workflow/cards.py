"""The workflow's ``cards`` stage: measure each exported model's throughput, then write its card as
``OUT/cards/<model>.card.md`` and ``.card.json``."""

from __future__ import annotations

import json
from pathlib import Path

from gesturekit.evaluation.cards import build_card, card_markdown, model_file
from gesturekit.evaluation.throughput import measure_throughput, store_throughput
from gesturekit.io import atomic_write_text
from gesturekit.workflow.config import Throughput


def write_cards(model_dirs: list[Path], out: Path, throughput: Throughput) -> None:
    for path in model_dirs:
        rows = measure_throughput(model_file(path), list(throughput.batches), throughput.seconds, throughput.threads)
        store_throughput(path, rows)
        card = build_card(path)
        atomic_write_text(out / f"{path.name}.card.json", json.dumps(card, indent=2) + "\n")
        atomic_write_text(out / f"{path.name}.card.md", card_markdown(card) + "\n")
