"""Run a model repository on the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships.

The repository's Python-backend models run in Triton's ``triton_python_backend_stub``, an embedded
Python that links ``libpython3.X.so.1.0`` dynamically. Left to the loader, it finds the system's
libpython of that minor version first (Debian's 3.11.2 beside a pyenv 3.11.7), which then runs the
interpreter's site-packages and standard library on a different C runtime: without numpy, or failing
with ``'_thread.RLock' object has no attribute '_recursion_count'`` once ``multiprocessing`` starts its
resource tracker (PyTriton issue 51). The server is therefore started with the running interpreter's
own library directory first on ``LD_LIBRARY_PATH`` (docs/serving.md) and its ``sys.path`` as
``GESTUREKIT_PYTHONPATH``, which each ``model.py`` puts first on its own (the stub's embedded interpreter
ignores ``PYTHONPATH`` and knows nothing of a virtual environment's site-packages); an
interpreter without a shared libpython is refused with one line.

The server process gets SIGTERM should this process die (``PR_SET_PDEATHSIG``), so no
``tritonserver`` outlives its parent.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gesturekit.errors import GesturekitError
from gesturekit.export.triton import SEARCH_PATH_VARIABLE

READY_TIMEOUT_S = 180.0
"""How long a starting server may take to load its models: on CUDA the cascade captures its CUDA graphs at load
(more than 30 s on an H100); a server that fails exits, and that is reported at once."""
STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Ports:
    """Where the server listens (``host`` only: 127.0.0.1 unless asked)."""

    host: str = "127.0.0.1"
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def urls(self) -> dict[str, str]:
        return {"http": f"http://{self.host}:{self.http}", "grpc": f"grpc://{self.host}:{self.grpc}",
                "metrics": f"http://{self.host}:{self.metrics}/metrics"}


def _distribution() -> Path:
    try:
        import pytriton
    except ImportError:
        raise GesturekitError("gesturekit serve needs the serve extra: pip install 'gesturekit[serve]'") from None
    return Path(pytriton.__file__).parent / "tritonserver"


def python_library_dir() -> str:
    """The directory of the running interpreter's shared ``libpython`` (what the backend stub embeds).

    A Python built with ``--enable-shared`` keeps it in ``LIBDIR``; Debian's and Ubuntu's system Pythons link
    their binary statically but ship the same library (package ``libpython3.X``) in the multiarch directory.
    """
    name = f"libpython{sys.version_info.major}.{sys.version_info.minor}{sys.abiflags}.so.1.0"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for directory in (libdir, os.path.join(libdir, multiarch) if multiarch else ""):
        if directory and os.path.isfile(os.path.join(directory, name)):
            return directory
    raise GesturekitError(f"{sys.executable}: no {name} beside this Python, which Triton's Python backend embeds "
                          f"(install the system package libpython{sys.version_info.major}.{sys.version_info.minor},"
                          " or use a Python built with --enable-shared: pyenv with "
                          "PYTHON_CONFIGURE_OPTS=--enable-shared, conda, uv)")


def check_stub_numpy() -> None:
    """Refuse numpy 2 in the interpreter whose modules the backend stubs import: the wheel's stub then misreads
    every ``BYTES`` input and aborts on the first request, after a clean start (seen with numpy 2.2 and 2.5).
    nvidia-pytriton pins numpy < 2; an environment that has it anyway gets one line here."""
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise GesturekitError(f"numpy {numpy.__version__}: the Triton Python backend stub of nvidia-pytriton needs "
                              "numpy < 2 (it aborts on the first request otherwise): pip install 'numpy<2'")


def prepare_backends(workdir: Path) -> Path:
    """A backend directory in ``workdir`` holding the Python backend and the stub of this Python."""
    dist = _distribution()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise GesturekitError(f"{stub}: nvidia-pytriton has no Python backend stub for Python {version}")
    target = workdir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for file in (dist / "backends" / "python").iterdir():
        if file.is_file():
            shutil.copy2(file, target / file.name)
    shutil.copy2(stub, target / stub.name)
    return workdir / "backends"


def server_environment() -> dict[str, str]:
    """The environment of ``tritonserver``: this Python's libpython, then the wheel's own libraries; this
    Python's module search path for the backend stubs."""
    libs = _distribution().parent.parent / "nvidia_pytriton.libs"
    paths = [python_library_dir(), str(libs), os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": ":".join(p for p in paths if p),
            SEARCH_PATH_VARIABLE: os.pathsep.join(p for p in sys.path if p)}


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonServer:
    """A ``tritonserver`` process over ``repository``, ready on return of :meth:`start`.

    Args:
        repository: a model repository whose models the wheel's server can run (Python backend).
        ports: addresses to listen on.
        workdir: where the backend directory is prepared.
        log: the server's log file (default: ``workdir/tritonserver.log``).
    """

    def __init__(self, repository: Path, ports: Ports, workdir: Path, log: Path | None = None) -> None:
        self.repository = Path(repository)
        self.ports = ports
        self.workdir = Path(workdir)
        self.log = log or self.workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, backends: Path) -> list[str]:
        host, ports = self.ports.host, self.ports
        return [str(_distribution() / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={backends}", f"--http-address={host}", f"--http-port={ports.http}",
                f"--grpc-address={host}", f"--grpc-port={ports.grpc}", f"--metrics-address={host}",
                f"--metrics-port={ports.metrics}", "--allow-metrics=true", "--allow-gpu-metrics=false",
                "--strict-readiness=true", "--exit-timeout-secs=10", "--log-info=true"]

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the server and wait until ``/v2/health/ready`` answers 200.

        Raises:
            GesturekitError: numpy 2 here (see :func:`check_stub_numpy`), or the server exited or was not
                ready in time (with the log's last line).
        """
        check_stub_numpy()
        command = self.command(prepare_backends(self.workdir))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=server_environment(),
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        url = f"{self.ports.urls()['http']}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GesturekitError(f"tritonserver exited with code {self.process.returncode}: {self.last_error()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise GesturekitError(f"tritonserver not ready after {timeout_s:.0f} s: {self.last_error()}")

    def last_error(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.is_file() else []
        errors = [line for line in lines if line.startswith("E") or "error" in line.lower()]
        return (errors or lines or [f"no output (log {self.log})"])[-1].strip()

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        if self.process is None:
            raise GesturekitError("tritonserver was not started")
        return self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM the server (it unloads the models and stops their stubs), SIGKILL after a timeout."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
