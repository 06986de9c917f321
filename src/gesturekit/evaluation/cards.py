"""Model cards: everything a card states is read from a file in the model's folder (``model.onnx`` and
its metadata, ``model.pt``, ``spec.yaml``, ``train_summary.json``, ``eval.json``, ``throughput.json``,
``packs.json``), and ``sources`` names the file behind each section. A card is a plain dict (``--json``)
and its Markdown rendering, laid out like an NGC model card: tables, the evaluation one row per set.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Any

import yaml

from gesturekit.errors import GesturekitError
from gesturekit.evaluation.graph_stats import graph_stats
from gesturekit.evaluation.throughput import THROUGHPUT_FILE, model_input, read_throughput
from gesturekit.models.metadata import read_onnx_metadata
from gesturekit.models.zoo import read_model_json
from gesturekit.models.zoo import EVAL, ONNX, SPEC, SUMMARY

PACKS = "packs.json"
"""A workflow's model folder: the summaries of the packs it was trained on (images, boxes, splits)."""
DETECTION_COLUMNS = (("ap50", "AP@0.5"), ("ap50_95", "AP@0.5:0.95"), ("kitti_ap", "KITTI AP"),
                     ("num_images", "images"))
CLASSIFICATION_COLUMNS = (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("num_samples", "crops"))
LICENCES = {
    "egohands": ("EgoHands (Indiana University)", "CC BY 4.0"),
    "hagrid": ("HaGRID", "CC BY-SA 4.0 (variant)"),
    "hands_yolo": ("hands (Roboflow export)", "CC BY 4.0"),
    "fingers_yolo": ("fingers (Roboflow export)", "CC BY 4.0"),
}
"""Licences as published of the data under ``../shared/data`` (its README), found by name in a
model's training and evaluation sources."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise GesturekitError(f"{path}: invalid YAML") from None
    return data if isinstance(data, dict) else {}


def _source_names(sources: list[Any]) -> list[str]:
    """A spec's data sources as ``path`` or ``path:split``."""
    return [f"{s['path']}:{s['split']}" if isinstance(s, dict) else str(s) for s in sources]


def _repeats(names: list[str]) -> list[dict[str, Any]]:
    """Sources in order, a source listed n times in a row once with ``repeat: n``."""
    return [{"source": name, "repeat": len(list(group))} for name, group in groupby(names)]


def _initialised_from(summary: dict[str, Any], spec: dict[str, Any], meta: dict[str, Any]) -> str:
    if summary.get("initialised_from"):
        return str(summary["initialised_from"])
    if meta.get("weight_average"):
        return "a weight average of trained checkpoints (Weights)"
    model = spec.get("model") or {}
    if model.get("load_graph") and model.get("pretrained_model_file"):
        return f"pruned graph {model['pretrained_model_file']}"
    if model.get("pretrained_model_file"):
        return f"checkpoint {model['pretrained_model_file']}"
    if model.get("pretrained", True) and spec:
        return f"ImageNet weights ({meta['arch_kwargs'].get('backbone')})"
    return "random initialisation" if spec else "unknown"


def _training(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The training summary: ``train_summary.json``, else the one the ONNX metadata carries (a PTQ model:
    its FP32 source's)."""
    summary = read_model_json(path / SUMMARY)
    if summary:
        return summary, SUMMARY
    if meta.get("training"):
        return dict(meta["training"]), f"{ONNX} (metadata.training)"
    return None, None


def _training_section(summary: dict[str, Any], spec: dict[str, Any], packs: dict[str, Any],
                      meta: dict[str, Any]) -> dict[str, Any]:
    dataset = summary.get("dataset") or {}
    spec_data = spec.get("dataset") or {}
    train = list(dataset.get("train") or _source_names(spec_data.get("train") or []))
    section: dict[str, Any] = {
        "initialised_from": _initialised_from(summary, spec, meta),
        "datasets": _repeats(train),
        "validation": _source_names(spec_data.get("val") or []),
        "images": dataset.get("train_images"),
        "packs": {name: {"images": p["images"], "boxes": p["boxes"], "splits": p["splits"]}
                  for name, p in packs.items() if p},
        "epochs": summary.get("epochs"),
        "completed_epochs": summary.get("completed_epochs"),
        "batch_size": summary.get("global_batch_size"),
        "precision": summary.get("precision"),
        "wall_time_s": summary.get("wall_time_s"),
        "hardware": summary.get("gpus") or summary.get("device"),
        "weights": _weights(summary, meta),
        "best_metric": ({"key": summary.get("metric_key"), "value": summary["best_metric"],
                         "epoch": summary.get("best_epoch")} if summary.get("best_metric") is not None else None),
    }
    if meta.get("quantization", {}).get("mode") == "ptq":
        q = meta["quantization"]
        section["calibration"] = {"images": q.get("calibration_images"), "cache": q.get("calibration_cache")}
    return section


def _weights(summary: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """What the shipped weights are when they are not the last trained ones: an average."""
    if meta.get("weight_average"):
        average = meta["weight_average"]
        return "average of " + ", ".join(f"`{file}` ({share:g})"
                                         for file, share in zip(average["checkpoints"], average["weights"]))
    if summary.get("ema_decay") is not None:
        warmup = ", ramped up from the first iterations" if summary.get("ema_warmup") else ""
        return f"moving average, decay {summary['ema_decay']} per iteration{warmup}"
    return None


def _evaluation(data: dict[str, Any], model_task: str) -> dict[str, Any]:
    task = data.get("task", model_task)  # a verifier is scored by the detection AP of its detector with it
    columns = DETECTION_COLUMNS if task == "detection" else CLASSIFICATION_COLUMNS
    rows, per_class = [], {}
    for name, result in (data.get("datasets") or {}).items():
        rows.append({"set": name, **{key: result.get(key) for key, _ in columns}})
        if task == "classification" and result.get("per_class"):
            per_class[name] = {c: {k: r[k] for k in ("precision", "recall", "f1", "support")}
                               for c, r in result["per_class"].items()}
    note = None
    if task != model_task and data.get("detector"):
        note = f"{task} of `{data['detector']}` with this model as its second stage"
    return {"split": data.get("split"), "note": note, "columns": [{"key": k, "label": label} for k, label in columns],
            "rows": rows, "per_class": per_class}


def _licences(names: list[str]) -> list[dict[str, str]]:
    text = " ".join(names).lower()
    found = [key for key in LICENCES if key in text]
    return [{"dataset": LICENCES[k][0], "licence": LICENCES[k][1]} for k in found]


def model_file(path: Path) -> Path:
    if not (path / ONNX).is_file():
        raise GesturekitError(f"{path}: no {ONNX} (a card describes the exported model)")
    return path / ONNX


def build_card(path: Path) -> dict[str, Any]:
    """The card of the model folder ``path`` (a zoo entry or a workflow's ``models/<name>``)."""
    onnx_file = model_file(path)
    meta = read_onnx_metadata(onnx_file)
    shape = (1, *model_input(meta).shape)
    stats = graph_stats(onnx_file, shape)
    spec = _read_yaml(path / SPEC)
    summary, summary_source = _training(path, meta)
    packs = read_model_json(path / PACKS)
    evaluation = read_model_json(path / EVAL)
    quantization = meta.get("quantization") or {}
    backbone = meta["arch_kwargs"].get("backbone")
    card: dict[str, Any] = {
        "name": path.name,
        "model": {
            "task": meta["task"],
            "classes": list(meta["classes"]),
            "architecture": meta["arch"],
            "backbone": backbone,
            "input_size": int(meta["input_size"]),
            "precision": str(meta.get("precision", "fp32")),
            "quantization": quantization.get("mode"),
            "pruned": bool(meta.get("pruned")),
            "parameters": stats.params,
            "macs": stats.macs,
            "macs_input": list(shape),
            "onnx_bytes": onnx_file.stat().st_size,
            "postprocessing": meta.get("postprocessing"),
        },
        "training": (_training_section(summary or {}, spec, packs, meta)
                     if summary or spec or meta.get("weight_average") else None),
        "evaluation": _evaluation(evaluation, meta["task"]) if evaluation else None,
        "throughput": read_throughput(path),
        "sources": {"model": ONNX, "training": summary_source or (SPEC if spec else None),
                    "evaluation": EVAL if evaluation else None,
                    "throughput": THROUGHPUT_FILE if (path / THROUGHPUT_FILE).is_file() else None,
                    "packs": PACKS if packs else None, "spec": SPEC if spec else None},
    }
    training = card["training"] or {}
    names = [d["source"] for d in training.get("datasets", [])] + list((evaluation.get("datasets") or {}))
    card["licences"] = _licences(names)
    return card


# ---------------------------------------------------------------- markdown


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(r)} |" for r in rows]


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:g}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _model_rows(m: dict[str, Any]) -> list[list[str]]:
    precision = m["precision"] + {"ptq": " (INT8 QDQ, calibrated)", "qat": " (INT8 QDQ, quantization-aware trained)"
                                  }.get(m["quantization"] or "", "")
    shape = "x".join(map(str, m["macs_input"][1:]))
    return [["Task", m["task"]], ["Classes", ", ".join(m["classes"])],
            ["Architecture", m["architecture"] + (f" (backbone {m['backbone']})" if m["backbone"] else "")
             + (", pruned" if m["pruned"] else "")],
            ["Input size", str(m["input_size"])], ["Precision", precision],
            ["Parameters", _count(m["parameters"])], ["MACs", f"{_count(m['macs'])} (input {shape})"],
            ["ONNX file", f"{m['onnx_bytes'] / 1e6:.1f} MB"]]


def _training_rows(t: dict[str, Any]) -> list[list[str]]:
    rows = [["Initialised from", t["initialised_from"]]]
    if t["datasets"]:
        rows.append(["Training data", ", ".join(f"`{d['source']}`" + (f" x{d['repeat']}" if d["repeat"] > 1 else "")
                                               for d in t["datasets"])])
    if t["validation"]:
        rows.append(["Validation data", ", ".join(f"`{v}`" for v in t["validation"])])
    if t["images"] is not None:
        rows.append(["Training images", f"{t['images']:,}"])
    for name, p in t["packs"].items():
        splits = ", ".join(f"{s} {n}" for s, n in p["splits"].items())
        rows.append([f"Pack `{Path(name).name}`", f"{p['images']:,} images, {p['boxes']:,} boxes ({splits})"])
    if t["epochs"] is not None:
        partial = t["completed_epochs"] not in (None, t["epochs"])
        rows.append(["Epochs", f"{t['epochs']}" + (f" (completed {t['completed_epochs']})" if partial else "")])
    for key, label in (("batch_size", "Batch size"), ("precision", "Training precision"),
                       ("hardware", "Hardware")):
        if t[key] is not None:
            rows.append([label, str(t[key])])
    if t["wall_time_s"] is not None:
        rows.append(["Training time", _duration(float(t["wall_time_s"]))])
    if t["weights"]:
        rows.append(["Weights", t["weights"]])
    if t["best_metric"]:
        b = t["best_metric"]
        rows.append(["Best validation", f"{b['key']} {b['value']:.4f} (epoch {b['epoch']})"])
    if t.get("calibration"):
        c = t["calibration"]
        rows.append(["INT8 calibration", f"{c['images']} images (cache `{c['cache']}`)"])
    return rows


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: model, training, evaluation (one row per set), throughput, licences."""
    lines = [f"# {card['name']}", "", "## Model", "", *_table(["Property", "Value"], _model_rows(card["model"])), ""]
    if card["training"]:
        lines += ["## Training", "", *_table(["Setting", "Value"], _training_rows(card["training"])), ""]
    post = card["model"]["postprocessing"]
    if post:
        lines += ["## Post-processing", "", *_table(["Parameter", "Value"], [[k, str(v)] for k, v in post.items()]), ""]
    ev = card["evaluation"]
    if ev and ev["rows"]:
        labels = [c["label"] for c in ev["columns"]]
        rows = [[f"`{r['set']}`", *(_value(r[c["key"]]) for c in ev["columns"])] for r in ev["rows"]]
        lines += [f"## Evaluation ({ev['split']} split)", "", *([ev["note"], ""] if ev["note"] else []),
                  *_table(["evaluation set", *labels], rows), ""]
        for name, classes in ev["per_class"].items():
            per = [[c, *(_value(v[k]) for k in ("precision", "recall", "f1", "support"))] for c, v in classes.items()]
            lines += [f"Per class, `{name}`:", "", *_table(["class", "precision", "recall", "F1", "crops"], per), ""]
    if card["throughput"]:
        rows = [[r["machine"], f"{r['backend']}, {r['threads']} threads", str(r["batch"]),
                 f"{r['images_per_s']:,.1f}", r["measured"]] for r in card["throughput"]]
        lines += ["## Throughput", "", *_table(["machine", "runtime", "batch", "images/s", "measured"], rows), "",
                  "The model call alone, on the input the runtime makes of a 640x480 frame (detector) or of one "
                  "crop (classifier).", ""]
    else:
        lines += ["## Throughput", "", "Not measured: `gesturekit models card NAME --measure`.", ""]
    if card["licences"]:
        lines += ["## Data licences", "", *_table(["dataset", "licence"],
                                                   [[x["dataset"], x["licence"]] for x in card["licences"]]), ""]
    sources = ", ".join(f"{k}: `{v}`" for k, v in card["sources"].items() if v)
    lines += [f"Every figure comes from the model's files ({sources})."]
    return "\n".join(lines)
