"""``gesturekit export triton-repo`` and ``gesturekit serve``: the models as a Triton model repository, and
that repository on a Triton Inference Server started from Python."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gesturekit.cli.infer import DeviceChoice


class Accelerator(str, Enum):
    tensorrt = "tensorrt"


class TrtPrecision(str, Enum):
    fp16 = "fp16"
    int8 = "int8"


class IoNames(str, Enum):
    gesturekit = "gesturekit"
    gesturenet = "gesturenet"


DetectorOpt = Annotated[Optional[str], typer.Option(
    help="Hand detector: a zoo name or an .onnx file. (default: the app's default for the device)",
    show_default=False)]
ClassifierOpt = Annotated[Optional[str], typer.Option(
    help="Gesture classifier: a zoo name or an .onnx file. (default: the app's default for the device)",
    show_default=False)]
VerifierOpt = Annotated[Optional[str], typer.Option(
    help="Hand verifier: a zoo name or an .onnx file. (default: hand-verifier)", show_default=False)]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="No hand verifier in the repository.")]
MaxBatchOpt = Annotated[int, typer.Option(
    min=1, help="Triton's max_batch_size; 1 turns dynamic batching off.")]


def _require_serve_extra() -> None:
    from importlib.util import find_spec

    from gesturekit.errors import GesturekitError

    missing = [name for name in ("tritonclient", "pytriton", "onnx") if find_spec(name) is None]
    if missing:
        raise GesturekitError(f"{missing[0]} is not installed: pip install 'gesturekit[serve]'")


def _model_files(detector: str | None, classifier: str | None, verifier: str | None, no_verify: bool,
                 device: str) -> tuple[Path, Path, Path | None]:
    from gesturekit.models.zoo import default_models
    from gesturekit.runtime.loading import resolve_model_file

    defaults = default_models("onnxruntime", device)
    return (resolve_model_file(detector or defaults["detector"], "onnxruntime"),
            resolve_model_file(classifier or defaults["classifier"], "onnxruntime"),
            None if no_verify else resolve_model_file(verifier or defaults["verifier"], "onnxruntime"))


def triton_repo(
    output: Annotated[Path, typer.Option("--output", "-o", help="The repository directory to create (must "
                                         "not exist).", show_default=False)],
    detector: DetectorOpt = None,
    classifier: ClassifierOpt = None,
    verifier: VerifierOpt = None,
    no_verify: NoVerifyOpt = False,
    accelerator: Annotated[Optional[Accelerator], typer.Option(
        help="tensorrt: run the ONNX files through the ONNX Runtime backend's TensorRT execution accelerator "
        "on GPU instances (FP32 models by default).", show_default=False)] = None,
    trt_precision: Annotated[TrtPrecision, typer.Option(
        help="--accelerator tensorrt: precision mode (int8 wants QDQ models exported with --int8-target "
        "tensorrt).")] = TrtPrecision.fp16,
    io_names: Annotated[IoNames, typer.Option(
        help="Classifier tensor names: gesturekit (images -> probs) or gesturenet (input_1 -> activation_18, "
        "as NVIDIA's GestureNet).")] = IoNames.gesturekit,
    max_batch_size: MaxBatchOpt = 8,
    instances: Annotated[int, typer.Option(min=1, help="Instances of each model (instance_group count).")] = 1,
) -> None:
    """Write a Triton model repository: hand_detector, hand_verifier, gesture_classifier (ONNX Runtime
    backend) and gesture_cascade (Python backend, the whole cascade: encoded image in, JSON hands out).

    Run it on NVIDIA's Triton container or KServe (docs/serving.md), or locally with gesturekit serve.

    Example: gesturekit export triton-repo -o model_repository --accelerator tensorrt
    """
    _require_serve_extra()
    from gesturekit.export.triton import RepositoryOptions, write_repository

    device = "cuda" if accelerator else "cpu"
    det, cls, ver = _model_files(detector, classifier, verifier, no_verify, device)
    options = RepositoryOptions(max_batch_size=max_batch_size, instances=instances, device=device,
                                accelerator=accelerator.value if accelerator else None,
                                trt_precision=trt_precision.value, io_names=io_names.value)
    out = write_repository(output, det, cls, ver, options)
    typer.echo(f"wrote {out} ({', '.join(sorted(p.name for p in out.iterdir()))})")


def export_group(export: Callable[..., None]) -> typer.Typer:
    """The ``export`` group: ``export`` itself (to ONNX) runs when no subcommand is given; ``triton-repo`` beside it."""

    def callback(ctx: typer.Context, **options: Any) -> None:
        if ctx.invoked_subcommand is None:
            export(**options)

    signature = inspect.signature(export)
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    parameters = [context, *signature.parameters.values()]
    callback.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    callback.__doc__ = export.__doc__
    group = typer.Typer(invoke_without_command=True, no_args_is_help=True)
    group.callback()(callback)
    group.command("triton-repo")(triton_repo)
    return group


def serve(
    detector: DetectorOpt = None,
    classifier: ClassifierOpt = None,
    verifier: VerifierOpt = None,
    no_verify: NoVerifyOpt = False,
    score_threshold: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="gesture_cascade keeps hands scoring at least this. (default: the app's, 0.3)",
        show_default=False)] = None,
    refine_boxes: Annotated[Optional[str], typer.Option(
        help="Boxes the verifier's box head moves, as in infer: doubtful, small, all or none. (default: doubtful)",
        show_default=False)] = None,
    device: Annotated[DeviceChoice, typer.Option(
        help="cpu: every model on ONNX Runtime. cuda: gesture_cascade runs the batched GPU cascade (torch "
        "checkpoints beside the ONNX files, as in the zoo), the single models ONNX Runtime's CUDA provider."
    )] = DeviceChoice.cpu,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 listens on every interface.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton HTTP/REST (KServe v2) port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(min=1, max=65535, help="Triton gRPC (KServe v2) port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(min=1, max=65535, help="Prometheus metrics port.")] = 8002,
    ui_port: Annotated[Optional[int], typer.Option(
        min=1, max=65535, help="Also serve the browser demo page on this port.", show_default=False)] = None,
    max_batch_size: MaxBatchOpt = 8,
    instances: Annotated[int, typer.Option(
        min=1, help="Instances of each model (Triton's instance_group count): more decode requests' images in "
        "parallel.")] = 1,
    threads: Annotated[int, typer.Option(
        min=0, help="ONNX Runtime intra-op threads of each model (0: one per core, at most 8).")] = 0,
) -> None:
    """Serve gesture_cascade, hand_detector, hand_verifier and gesture_classifier on a Triton Inference
    Server (HTTP and gRPC, KServe v2 protocol; dynamic batching; /v2/health/ready; Prometheus metrics).

    gesture_cascade takes input "image" (BYTES [1]: one encoded JPEG or PNG per row) and returns
    "detections" (BYTES [1]: a JSON array of {"bbox", "score", "gesture", "gesture_score"}, pixels of the image).

    Stops cleanly on Ctrl-C or SIGTERM.

    Example: gesturekit serve --ui-port 8080
    """
    import signal
    import tempfile

    _require_serve_extra()
    from gesturekit.errors import GesturekitError
    from gesturekit.export.triton import RepositoryOptions, write_repository
    from gesturekit.config.app import load_app_config
    from gesturekit.pipeline.recognizer import configure
    from gesturekit.serve.server import Ports, TritonServer

    det, cls, ver = _model_files(detector, classifier, verifier, no_verify, device.value)
    recognizer = {key: value for key, value in (("score_threshold", score_threshold),
                                                ("primary__refine_boxes", refine_boxes)) if value is not None}
    configure(load_app_config(None), primary__refine_boxes=refine_boxes)  # a bad value: one line, before starting
    options = RepositoryOptions(max_batch_size=max_batch_size, instances=instances, device=device.value,
                                model_backend="python", threads=threads, recognizer=recognizer,
                                cascade_backend="torch" if device == DeviceChoice.cuda else "onnxruntime")
    ports = Ports(host, http_port, grpc_port, metrics_port)

    def on_signal(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    with tempfile.TemporaryDirectory(prefix="gesturekit-serve-") as work:
        server = TritonServer(write_repository(Path(work) / "repository", det, cls, ver, options), ports, Path(work))
        page = None
        try:
            server.start()
            urls = ports.urls()
            if ui_port is not None:
                from gesturekit.serve.page import PageServer

                page = PageServer(host, ui_port, urls["http"])
                urls["ui"] = page.url
            for name, url in urls.items():
                typer.echo(f"{name}: {url}")
            typer.echo("ready (Ctrl-C stops)")
            code = server.wait()
            raise GesturekitError(f"tritonserver exited with code {code}: {server.last_error()}")
        except KeyboardInterrupt:
            typer.echo("stopping")
        finally:
            if page is not None:
                page.close()
            server.stop()
            signal.signal(signal.SIGTERM, previous)
