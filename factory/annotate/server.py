"""The local HTTP server behind the annotation page (stdlib only).

Routes: ``GET /`` (the page), ``GET /api/next?annotator=``, ``GET /api/progress?annotator=``,
``POST /api/label`` ``{"annotator", "id", "choice": "left"|"right"|"tie", "note"}`` and
``POST /api/undo`` ``{"annotator"}``. Answers are JSON; errors are ``{"error": "..."}`` with a 4xx status.

It binds 127.0.0.1 by default. Because any web page the annotator visits could try to talk to a
local port, it only accepts requests addressed to its own host name (no DNS rebinding), JSON POSTs
(a cross-site form cannot send them without a CORS preflight, which is never granted) and, when the
browser sends an Origin, only its own. The page runs under a strict Content-Security-Policy: its one
inline script carries a per-response nonce, and nothing else may run or load.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlsplit

from factory._util.errors import UserError
from factory.annotate.items import default_labels_path, load_items
from factory.annotate.queue import build_queue
from factory.annotate.session import AnnotationSession, SessionError, check_annotator
from factory.annotate.store import LabelStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_PAGE_PATH = Path(__file__).with_name("page.html")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "factory-annotate"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- routing ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        session = self.server.session
        try:
            if url.path in ("/", "/index.html"):
                self._send_page()
            elif url.path == "/api/next":
                self._send_json(session.next(session.annotator(query.get("annotator"))))
            elif url.path == "/api/progress":
                self._send_json(session.progress(session.annotator(query.get("annotator"))))
            elif url.path == "/favicon.ico":
                self._send_bytes(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._send_json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except SessionError as e:
            self._send_json({"error": str(e)}, e.status)

    def do_POST(self) -> None:
        if not self._host_ok() or not self._origin_ok():
            return
        path = urlsplit(self.path).path
        session = self.server.session
        annotator: str | None = None
        try:
            body = self._read_json()
            annotator = session.annotator(body.get("annotator"))
            if path == "/api/label":
                self._send_json(
                    session.label(annotator, body.get("id"), body.get("choice"), body.get("note", ""))
                )
            elif path == "/api/undo":
                self._send_json(session.undo(annotator))
            else:
                self._send_json({"error": f"no such endpoint: {path}"}, HTTPStatus.NOT_FOUND)
        except SessionError as e:
            payload: dict[str, Any] = {"error": str(e)}
            if e.status == HTTPStatus.CONFLICT and annotator is not None:
                payload.update(session.next(annotator))
            self._send_json(payload, e.status)

    # --- guards ----------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if self.server.check_host:
            host = (self.headers.get("Host") or "").strip().lower()
            if host not in self.server.allowed_hosts:
                self._send_json({"error": "unexpected Host header"}, HTTPStatus.FORBIDDEN)
                return False
        return True

    def _origin_ok(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{(self.headers.get('Host') or '').lower()}":
            self._send_json({"error": "cross-origin requests are not accepted"}, HTTPStatus.FORBIDDEN)
            return False
        return True

    def _read_json(self) -> dict[str, Any]:
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise SessionError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)"
            )
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise SessionError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise SessionError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"bodies are at most {MAX_BODY_BYTES} bytes"
            )
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise SessionError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from None
        if not isinstance(body, dict):
            raise SessionError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return body

    # --- responses -------------------------------------------------------------------------------

    def _send_page(self) -> None:
        nonce = secrets.token_urlsafe(18)
        html = self.server.page.replace("__NONCE__", nonce).encode("utf-8")
        self._send_bytes(
            HTTPStatus.OK,
            html,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": _CSP.format(nonce=nonce)},
        )

    def _send_json(self, payload: dict[str, Any], status: int = HTTPStatus.OK) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_bytes(status, body, "application/json; charset=utf-8")

    def _send_bytes(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], session: AnnotationSession) -> None:
        self.session = session
        self.page = _PAGE_PATH.read_text(encoding="utf-8")
        super().__init__(address, _Handler)
        host, port = self.server_address[:2]
        self.check_host = str(host) in _LOOPBACK
        self.allowed_hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}


class AnnotationServer:
    """The annotation page and API for one session, on ``host:port`` (port 0 picks a free one).

    Example::

        with AnnotationServer(session) as server:   # serves in a background thread
            print(server.url)
    """

    def __init__(self, session: AnnotationSession, host: str = "127.0.0.1", port: int = 0) -> None:
        self.session = session
        try:
            self._httpd = _Server((host, port), session)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; try another --port") from e
        self._thread: threading.Thread | None = None

    @cached_property
    def url(self) -> str:
        host, port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        return f"http://{shown}:{port}/"

    def page_url(self, annotator: str | None = None) -> str:
        """The page's address, opening as ``annotator`` when given."""
        return self.url + (f"?annotator={quote(annotator)}" if annotator else "")

    def serve_forever(self) -> None:
        """Serve in this thread until ``close()`` or Ctrl-C."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Self:
        """Serve in a background (daemon) thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="annotate-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the labels file (every label is already on disk before this)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self.session.store.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(
    source: Path,
    annotator: str | None = None,
    *,
    out: Path | None = None,
    budget: int | None = None,
    seed: int = 0,
) -> AnnotationSession:
    """Load ``source``, build the queue and open (or resume) the labels file.

    Example: ``AnnotationServer(open_session(Path("outputs/run-1"), "ana", budget=100)).serve_forever()``
    """
    if annotator is not None:
        try:
            annotator = check_annotator(annotator)
        except SessionError as e:
            raise UserError(f"--annotator: {e}") from None
    from factory.dataset.review_queue import queued_ids  # deferred: it pulls in the build's config and tables

    items = load_items(Path(source))
    first = queued_ids(Path(source)) if Path(source).is_dir() else []
    queue = build_queue(items, seed=seed, budget=budget, first=first)
    labels_path = (Path(out) if out is not None else default_labels_path(Path(source))).resolve()
    try:
        store = LabelStore(labels_path)
    except OSError as e:
        raise UserError(f"cannot open the labels file {labels_path}: {e.strerror or e}") from e
    return AnnotationSession(queue, store, default_annotator=annotator)
