"""The workflow's report: ``OUT/report.html`` (one file, its PNGs embedded as data URIs) and ``OUT/report.md``
(its PNGs under ``OUT/report/``), built from the files the stages wrote: training logs, evaluations, the
pruning report or threshold search, the cards and the step times."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gesturekit.io import atomic_write_bytes, atomic_write_text
from gesturekit.workflow.state import STATE_FILE

TRAINING_RUNS = (("train", "trained"), ("finetune", "fine-tuned"), ("retrain", "pruned, retrained"),
                 ("qat", "quantization-aware trained"))
VALIDATION_KEYS = ("ap50", "macro_f1")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _records(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _steps(out: Path) -> dict[str, dict[str, Any]]:
    """The workflow state's records by step (``stage/target``), in the order the steps first started."""
    path = out / STATE_FILE
    return dict(json.loads(path.read_text())["steps"]) if path.is_file() else {}


def curves_png(out: Path, model: str) -> bytes | None:
    """Training loss (left) and validation metric (right) per epoch of each training run of ``model``."""
    runs = []
    for stage, label in TRAINING_RUNS:
        if stage != "finetune":
            runs.append((label, _records(out / stage / model)))
            continue
        for target in _steps(out):  # fine-tunes in the order they ran: OUT/finetune/<model>-<name>
            prefix = f"{stage}/{model}-"
            if target.startswith(prefix):
                runs.append((f"{label} ({target[len(prefix):]})", _records(out / target)))
    runs = [(label, recs) for label, recs in runs if recs]
    if not runs:
        return None
    fig = Figure(figsize=(10, 3.8))
    loss_ax, val_ax = fig.subplots(1, 2)
    offset = 0
    for label, recs in runs:
        epochs = [offset + r["epoch"] for r in recs]
        loss_ax.plot(epochs, [r["loss"]["total"] for r in recs], "o-", label=label)
        val = [(offset + r["epoch"], r["val"][k]) for r in recs for k in VALIDATION_KEYS if k in (r.get("val") or {})]
        if val:
            val_ax.plot(*zip(*val), "o-", label=label)
        offset = epochs[-1]
    loss_ax.set(xlabel="epoch (runs in sequence)", ylabel="training loss", title=f"{model}: loss")
    val_ax.set(xlabel="epoch (runs in sequence)", ylabel="validation " + ("AP@0.5" if model == "detector" else
                                                                         "macro-F1"), title=f"{model}: validation")
    for ax in (loss_ax, val_ax):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    return _png(fig)


def pruning(out: Path) -> tuple[list[dict[str, Any]], bytes | None]:
    """The pruning trade-off: (threshold, parameters, MACs, AP) rows and its plot, from the threshold search
    (``search.json``) or the fixed-threshold report (``pruned.prune.json``)."""
    prune_dir = out / "prune" / "detector"
    search = prune_dir / "search" / "search.json"
    if search.is_file():
        data = json.loads(search.read_text())
        base = data["baseline"]
        rows = [{"threshold": "unpruned", "params": base["params"], "macs": base["macs"], "ap50": base["metric"]}]
        rows += [{"threshold": p["threshold"], "params": p["params"], "macs": p["macs"], "ap50": p["metric"],
                  "chosen": p["threshold"] == data["chosen_threshold"]} for p in data["points"]]
    elif (prune_dir / "pruned.prune.json").is_file():
        data = json.loads((prune_dir / "pruned.prune.json").read_text())
        rows = [{"threshold": "unpruned", "params": data["before"]["params"], "macs": data["before"]["macs"],
                 "ap50": None},
                {"threshold": data["settings"]["threshold"], "params": data["after"]["params"],
                 "macs": data["after"]["macs"], "ap50": None, "chosen": True}]
    else:
        return [], None
    fig = Figure(figsize=(10, 3.8))
    params_ax, ap_ax = fig.subplots(1, 2)
    labels = [str(r["threshold"]) for r in rows]
    params_ax.bar(labels, [r["params"] / 1e6 for r in rows], color="tab:blue", label="parameters (M)")
    params_ax.bar(labels, [r["macs"] / 1e9 for r in rows], color="tab:orange", alpha=0.6, width=0.4,
                  label="MACs (G)")
    params_ax.set(xlabel="pruning threshold", title="size per threshold")
    params_ax.legend(fontsize="small")
    scored = [r for r in rows if r["ap50"] is not None]
    if scored:
        ap_ax.plot([r["params"] / 1e6 for r in scored], [r["ap50"] for r in scored], "o-")
        for r in scored:
            ap_ax.annotate(str(r["threshold"]), (r["params"] / 1e6, r["ap50"]), textcoords="offset points",
                           xytext=(4, 4), fontsize="small")
    ap_ax.set(xlabel="parameters (M)", ylabel="AP@0.5 after brief retraining", title="AP per size")
    for ax in (params_ax, ap_ax):
        ax.grid(True, alpha=0.3)
    return rows, _png(fig)


def _headline(card: dict[str, Any]) -> float | None:
    """The mean over evaluation sets of AP@0.5 (detector) or macro-F1 (classifier)."""
    ev = card.get("evaluation") or {}
    key = ev["columns"][0]["key"] if ev.get("columns") else None
    values = [r[key] for r in ev.get("rows", []) if key and r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _speed(card: dict[str, Any], batch: int) -> float | None:
    rows = [r for r in card.get("throughput") or [] if r["batch"] == batch]
    return rows[-1]["images_per_s"] if rows else None


def variants(out: Path, names: list[str]) -> tuple[list[dict[str, Any]], bytes | None]:
    """Each exported model side by side (from its card): metric, parameters, MACs, CPU latency, images/s."""
    rows = []
    for name in names:
        card = json.loads((out / "cards" / f"{name}.card.json").read_text())
        speed1 = _speed(card, 1)
        rows.append({"model": name, "task": card["model"]["task"], "metric": _headline(card),
                     "metric_name": "AP@0.5" if card["model"]["task"] == "detection" else "macro-F1",
                     "params": card["model"]["parameters"], "macs": card["model"]["macs"],
                     "latency_ms": round(1000.0 / speed1, 2) if speed1 else None,
                     "images_per_s_batch8": _speed(card, 8)})
    if not rows:
        return rows, None
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 3)
    labels = [r["model"] for r in rows]
    for ax, key, title in zip(axes, ("metric", "macs", "latency_ms"),
                              ("AP@0.5 / macro-F1 (mean of the sets)", "MACs", "CPU latency, batch 1 (ms)")):
        ax.barh(labels, [r[key] or 0 for r in rows], color="tab:blue")
        ax.set(title=title)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    return rows, _png(fig)


def _step_times(out: Path) -> list[tuple[str, float]]:
    return [(name, float(rec.get("seconds", 0.0))) for name, rec in _steps(out).items() if rec.get("status") == "done"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(r)} |" for r in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _evaluation_images(out: Path) -> list[tuple[str, bytes]]:
    """The PR curves and confusion matrices the ``evaluate`` stage drew."""
    found = []
    for model in ("detector", "classifier"):
        folder = out / "evaluate" / model
        if folder.is_dir():
            found += [(f"{model}: {p.stem}", p.read_bytes()) for p in sorted(folder.glob("*.png"))]
    return found


def write_report(out: Path, name: str, models: list[str]) -> None:
    """Write ``out/report.html``, ``out/report.md`` and the PNGs under ``out/report/``."""
    variant_rows, variant_png = variants(out, models)
    prune_rows, prune_png = pruning(out)
    model_header = ["model", "metric", "value", "parameters", "MACs", "CPU latency b1 (ms)", "images/s b8"]
    prune_header = ["threshold", "parameters", "MACs", "AP@0.5"]
    sections: list[tuple[str, list[str], list[list[str]], list[tuple[str, bytes]]]] = [
        ("Models", model_header,
         [[r["model"], r["metric_name"], _fmt(r["metric"]), _fmt(r["params"]), _fmt(r["macs"]),
           _fmt(r["latency_ms"], 2), _fmt(r["images_per_s_batch8"], 1)] for r in variant_rows],
         [("exported models side by side", variant_png)] if variant_png else []),
        ("Pruning", prune_header,
         [[str(r["threshold"]) + (" (chosen)" if r.get("chosen") else ""), _fmt(r["params"]), _fmt(r["macs"]),
           _fmt(r["ap50"])] for r in prune_rows],
         [("pruning trade-off: threshold vs parameters vs AP@0.5", prune_png)] if prune_png else []),
        ("Training", [], [], [(f"{model}: loss and validation per epoch", png) for model in ("detector", "classifier")
                              if (png := curves_png(out, model))]),
        ("Evaluation of the trained models", [], [], _evaluation_images(out)),
        ("Steps", ["step", "seconds (last run)"], [[step, f"{seconds:.1f}"] for step, seconds in _step_times(out)], []),
    ]
    files: dict[str, str] = {}
    for caption, png in (figure for section in sections for figure in section[3]):
        files[caption] = atomic_write_bytes(out / "report" / f"{len(files):02d}.png", png).relative_to(out).as_posix()

    md = [f"# Workflow report: {name}", ""]
    parts = [f"<h1>Workflow report: {html.escape(name)}</h1>"]
    for title, header, rows, figures in sections:
        if not rows and not figures:
            continue
        md += [f"## {title}", ""]
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if rows:
            cards = title == "Models"
            md += [*_md_table(header + (["card"] if cards else []),
                              [r + ([f"[card](cards/{r[0]}.card.md)"] if cards else []) for r in rows]), ""]
            parts.append(_html_table(header + (["card"] if cards else []),
                                     [[*map(html.escape, r)] + ([f'<a href="cards/{html.escape(r[0])}.card.md">card</a>']
                                                                if cards else []) for r in rows]))
        for caption, png in figures:
            md += [f"![{caption}]({files[caption]})", ""]
            data = base64.b64encode(png).decode()
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    atomic_write_text(out / "report.md", "\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    atomic_write_text(out / "report.html", page)
