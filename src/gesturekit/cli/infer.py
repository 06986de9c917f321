"""``gesturekit infer``: run the hand detector -> gesture classifier cascade on images and video."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gesturekit.cli.signals import exit_at_once_on_signals
from gesturekit.config.app import load_app_config
from gesturekit.errors import GesturekitError
from gesturekit.pipeline.app import Interrupted, SourceReport, open_sources
from gesturekit.pipeline.outputs import check_outputs, input_paths, planned_outputs
from gesturekit.pipeline.processes import WorkersFailed, process_count, run_processes
from gesturekit.pipeline.recognizer import GestureRecognizer, configure


class BackendChoice(str, Enum):
    onnxruntime = "onnxruntime"
    torch = "torch"
    triton = "triton"


class DeviceChoice(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


SOURCES_HELP = (
    "Inputs: an image, a folder of images (searched recursively), a video file, an RTSP/HTTP URL, "
    "or a camera (0 or /dev/video0). Several sources are batched together; each keeps its own "
    "results, in order. Unreadable images, and images over 89.5 megapixels (decompression bombs), "
    "are counted and skipped. Default: the config's sources list."
)
OUT_JSON_HELP = (
    "Write predictions as JSON Lines, one line per image or frame: "
    '{"image": path relative to the folder, "detections": [...]} or '
    '{"source": uri, "frame": n, "pts": seconds, "detections": [...]}, a detection being '
    '{"bbox": \\[x1, y1, x2, y2], "score", "gesture", "gesture_score", "track_id"} in pixels of the '
    "original frame. With several sources, one file per source: preds.jsonl becomes "
    "preds.0.jsonl, preds.1.jsonl, ... numbered in SOURCE order."
)
PROCESSES_HELP = (
    "Worker processes to split the sources between, each source whole in one; the outputs are the one-process "
    "run's. (default: with --device cuda and several sources, one per GPU, those CUDA_VISIBLE_DEVICES names "
    "or else nvidia-smi -L lists; otherwise 1, as with --preview-port)"
)
OUT_VIDEO_HELP = (
    "Write the annotated video (boxes, gestures, track ids, FPS). With several sources, one file "
    "per source, numbered like --out-json. Video sources only."
)


def _summary(report: SourceReport) -> str:
    parts = [f"{report.frames} frames", f"{report.fps:.1f} FPS"]
    if report.corrupt:
        parts.append(f"{report.corrupt} corrupt skipped")
    if report.dropped:
        parts.append(f"{report.dropped} dropped")
    if report.reconnects:
        parts.append(f"{report.reconnects} reconnects")
    line = f"{report.uri}: " + ", ".join(parts)
    return f"{line}; warning: {report.error}" if report.error else line


def infer(
    sources: Annotated[Optional[list[str]], typer.Argument(help=SOURCES_HELP, show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="App config YAML (see gesturekit/specs/app.yaml); flags override it.",
        show_default=False)] = None,
    detector: Annotated[Optional[str], typer.Option(
        help="Hand detector: a zoo name or a model file (.onnx, .pt); hand-detector-int8 with --refine-boxes "
        "small is the most accurate CPU choice, slower on video (docs/experiments.md). "
        "(default: hand-detector-pruned-int8 on onnxruntime on the CPU, else hand-detector)",
        show_default=False)] = None,
    classifier: Annotated[Optional[str], typer.Option(
        help="Gesture classifier: a zoo name or a model file. "
        "(default: gesture-classifier-int8 on onnxruntime on the CPU, else gesture-classifier)",
        show_default=False)] = None,
    verifier: Annotated[Optional[str], typer.Option(
        help="Hand verifier, the detector's second stage: a zoo name or a model file. (default: hand-verifier)",
        show_default=False)] = None,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Keep the detector's own scores (no hand verifier); consider --score-threshold 0.4."
    )] = False,
    refine_boxes: Annotated[Optional[str], typer.Option(
        help="Boxes the verifier's box head moves: doubtful (those it rescores), small (every box its crop "
        "shows sharper than the detector's input, trusted ones too: small hands), all (every box: better "
        "boxes, a crop each, fewer frames per second) or none. (default: doubtful)",
        show_default=False)] = None,
    no_classifier: Annotated[bool, typer.Option(
        "--no-classifier", help="Detect hands only (every gesture is null).")] = False,
    backend: Annotated[Optional[BackendChoice], typer.Option(
        help="Inference backend; triton runs the models on a Triton server (--url). (default: onnxruntime)",
        show_default=False)] = None,
    url: Annotated[Optional[str], typer.Option(
        help="--backend triton: the server, host:port (HTTP) or grpc://host:port, e.g. one started by "
        "gesturekit serve.", show_default=False)] = None,
    device: Annotated[Optional[DeviceChoice], typer.Option(
        help="Inference device. (default: cpu)", show_default=False)] = None,
    precision: Annotated[Optional[PrecisionChoice], typer.Option(
        help="Weights and inputs of the torch backend on CUDA. (default: fp16 there, else fp32)",
        show_default=False)] = None,
    processes: Annotated[Optional[int], typer.Option(min=1, help=PROCESSES_HELP, show_default=False)] = None,
    out_json: Annotated[Optional[Path], typer.Option(help=OUT_JSON_HELP, show_default=False)] = None,
    out_video: Annotated[Optional[Path], typer.Option(help=OUT_VIDEO_HELP, show_default=False)] = None,
    preview_port: Annotated[Optional[int], typer.Option(
        min=1, max=65535, help="Serve a live MJPEG preview on http://127.0.0.1:PORT/.",
        show_default=False)] = None,
    score_threshold: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Keep detections scoring at least this (after the verifier). (default: 0.3)",
        show_default=False)] = None,
    margin: Annotated[Optional[float], typer.Option(
        min=0.0, help="Crop margin in pixels around each hand, overriding the classifier's own.",
        show_default=False)] = None,
    min_crop: Annotated[Optional[int], typer.Option(
        min=1, help="Classify only crops whose shorter side has this many pixels. (default: 32)",
        show_default=False)] = None,
    no_track: Annotated[bool, typer.Option(
        "--no-track", help="No tracking or gesture vote on video (every track_id is null).")] = False,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="Detector inference threads (ONNX Runtime intra-op; the classifier's are the app "
        "config's secondary.threads, default 1). (default: all cores)",
        show_default=False)] = None,
    max_frames: Annotated[Optional[int], typer.Option(
        min=1, help="Stop each source after this many frames.", show_default=False)] = None,
    perf_interval: Annotated[Optional[float], typer.Option(
        min=0.0, help="Print per-source FPS every this many seconds (0: never). (default: 5)",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    sample: Annotated[bool, typer.Option(
        "--sample", help="Add the clip shipped with gesturekit (one hand signing letters, 13 s) to the sources.",
    )] = False,
) -> None:
    """Run the hand detector -> gesture classifier cascade on images, videos, streams or cameras.

    Each hand gets the detector's box and the classifier's gesture on a widened crop of it.

    On video, hands are tracked (track_id) and each gesture is voted over the last frames.

    Corrupt frames are skipped and counted; live streams drop frames rather than fall behind.

    Example: gesturekit infer clip.mp4 --out-json preds.jsonl --out-video annotated.mp4

    Try it on the shipped clip: gesturekit infer --sample --out-video asl_annotated.mp4
    """
    base = load_app_config(config)
    if sample:
        from gesturekit.samples import SAMPLE_VIDEO

        sources = [*(sources or []), str(SAMPLE_VIDEO)]
    if sources:
        base = base.model_copy(update={"sources": list(sources)})
    cfg = configure(
        base,
        primary__detector=detector,
        primary__backend=backend.value if backend else None,
        primary__device=device.value if device else None,
        primary__precision=precision.value if precision else None,
        primary__score_threshold=score_threshold,
        primary__threads=threads,
        primary__verifier=verifier,
        primary__verify=False if no_verify else None,
        primary__refine_boxes=refine_boxes,
        secondary__classifier=classifier,
        secondary__enabled=False if no_classifier else None,
        secondary__margin=margin,
        secondary__min_crop_size=min_crop,
        tracker__enabled=False if no_track else None,
        sinks__json=str(out_json) if out_json else None,
        sinks__video=str(out_video) if out_video else None,
        sinks__preview_port=preview_port,
        sinks__perf_interval_s=0.0 if quiet else perf_interval,
        streammux__max_frames=max_frames,
    )
    echo = (lambda line: None) if quiet else (lambda line: typer.echo(line, err=True))
    workers = process_count(cfg, processes)
    opened = open_sources(cfg)
    try:
        check_outputs(planned_outputs(cfg, len(opened)), input_paths(cfg, opened, config))
        if url is not None and cfg.primary.backend != "triton":
            raise typer.BadParameter("--url is for --backend triton", param_hint="--url")
        recognizer = GestureRecognizer(config=cfg, url=url) if workers == 1 else None
    except BaseException:
        for source in opened:
            source.close()
        raise
    if recognizer is None:
        for source in opened:  # checked here; each worker opens its own
            source.close()
    exit_at_once_on_signals()  # what the app restores when it returns: no window for a late Ctrl-C
    try:
        if recognizer is None:
            reports = run_processes(cfg, workers, url=url, emit=echo)
        else:
            reports = recognizer.run(opened, emit=echo)
    except Interrupted as stop:
        for report in stop.reports:
            echo(_summary(report))
        echo(f"{stop}: outputs hold every frame processed")
        raise typer.Exit(128 + stop.signum) from None
    except WorkersFailed as failed:
        for report in failed.reports:
            echo(_summary(report))
        raise
    for report in reports:
        echo(_summary(report))
    unreadable = [f"{r.uri} ({r.corrupt} corrupt)" for r in reports if r.frames == 0 and r.corrupt]
    if unreadable:  # a run that decoded nothing did not succeed (and wrote nothing for those sources)
        raise GesturekitError(f"no frame could be decoded from {', '.join(unreadable)}")
