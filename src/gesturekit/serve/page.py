"""The browser demo: one page, and a small proxy from the page to Triton's ``gesture_cascade``.

The page (``serve/static/index.html``) sends each image or video frame as an encoded JPEG/PNG to
``POST /recognize``; this server forwards it to Triton over the KServe v2 HTTP protocol and answers
the JSON hands. The page itself holds no model. The proxy exists because Triton's HTTP endpoint sends
no CORS headers, so a page served from another port may not call it directly.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from gesturekit.errors import GesturekitError
from gesturekit.serve.triton_models import MAX_IMAGE_BYTES

CASCADE = "gesture_cascade"


def recognize(url: str, image: bytes) -> list[dict[str, Any]]:
    """The hands of one encoded image, from the ``gesture_cascade`` model of the server at ``url``.

    Raises:
        GesturekitError: the server refused the image (its one-line reason) or could not be reached.
    """
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(urlsplit(url).netloc)
    try:
        tensor = http.InferInput("image", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[image]], dtype=np.object_))
        result = client.infer(CASCADE, [tensor])
        return json.loads(result.as_numpy("detections")[0, 0])
    except InferenceServerException as exc:
        raise GesturekitError(exc.message()) from None
    finally:
        client.close()


def _handler(triton_url: str, page: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the server's log is Triton's
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path in ("/", "/index.html"):
                self._send(200, page, "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"{self.path}: not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/recognize":
                self._json(404, {"error": f"{self.path}: not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_IMAGE_BYTES:
                self.close_connection = True
                self._json(413 if length else 400, {"error": f"send one image of 1 to {MAX_IMAGE_BYTES:,} bytes"})
                return
            try:
                hands = recognize(triton_url, self.rfile.read(length))
            except GesturekitError as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, {"detections": hands})

    return Handler


class PageServer:
    """The demo page on ``http://host:port/`` calling the Triton server at ``triton_url``, in a daemon thread."""

    def __init__(self, host: str, port: int, triton_url: str) -> None:
        page = files("gesturekit.serve").joinpath("static/index.html").read_bytes()
        try:
            self._server = ThreadingHTTPServer((host, port), _handler(triton_url, page))
        except OSError as exc:
            raise GesturekitError(f"--ui-port {port}: cannot listen: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="page", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
