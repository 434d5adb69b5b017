"""``stream --view``: a live page on localhost, served by the streaming process itself (stdlib http.server).

``/`` is the page, ``/state.json`` the counters, the newest epochs and the latency series, and
``/images/epoch_NNNNNN.png`` the images from the output folder. The page polls ``/state.json`` twice a
second and shows the reconstructions newest first, each with its stimulus-to-image latency, and a
running latency plot (an inline SVG). It binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .output import IMAGE_RE, LiveState

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>eeg2img-deploy stream</title>
<style>
body { font-family: sans-serif; margin: 1em; background: #111; color: #eee; }
#counts { font-size: 1.3em; margin-bottom: .5em; }
#grid { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; text-align: center; }
figure img { width: 160px; height: 160px; image-rendering: pixelated; border: 1px solid #444; }
figcaption { font-size: .85em; color: #aaa; }
svg { background: #1b1b1b; border: 1px solid #444; margin: .5em 0; }
</style></head><body>
<h2>Live reconstructions</h2>
<div id="counts">epochs <span id="epochs">0</span> &middot; dropped <span id="dropped">0</span>
 &middot; stimulus-to-image p50 <span id="p50">-</span> ms, p99 <span id="p99">-</span> ms
 &middot; <span id="status">connecting</span></div>
<svg id="plot" width="820" height="160"></svg>
<div id="grid"></div>
<script>
function draw(plot) {
  const svg = document.getElementById("plot"), w = 820, h = 160, pad = 30;
  if (!plot.length) { svg.innerHTML = ""; return; }
  const ymax = Math.max(...plot.map(p => p[1])) * 1.1 || 1;
  const x = i => pad + (w - 2 * pad) * (plot.length > 1 ? i / (plot.length - 1) : 0);
  const y = v => h - pad - (h - 2 * pad) * v / ymax;
  const line = (k, color) => '<polyline fill="none" stroke="' + color + '" points="' +
      plot.map((p, i) => x(i) + "," + y(p[k])).join(" ") + '"/>';
  svg.innerHTML = line(1, "#4fc3f7") + line(2, "#ffb74d") +
    '<text x="4" y="14" fill="#aaa" font-size="11">' + ymax.toFixed(0) + ' ms</text>' +
    '<text x="' + pad + '" y="' + (h - 8) + '" fill="#4fc3f7" font-size="11">from stimulus</text>' +
    '<text x="' + (pad + 110) + '" y="' + (h - 8) + '" fill="#ffb74d" font-size="11">from end of epoch window</text>';
}
async function tick() {
  try {
    const s = await (await fetch("/state.json", {cache: "no-store"})).json();
    for (const k of ["epochs", "dropped", "status"]) document.getElementById(k).textContent = s[k];
    document.getElementById("p50").textContent = s.p50_ms ?? "-";
    document.getElementById("p99").textContent = s.p99_ms ?? "-";
    document.getElementById("grid").innerHTML = s.recent.map(r =>
      '<figure><img class="recon" onload="this.dataset.loaded=1" src="/images/' + r.image + '"><figcaption>#' + r.index + ' &middot; ' +
      r.latency_ms + ' ms</figcaption></figure>').join("");
    draw(s.plot);
  } catch (e) { document.getElementById("status").textContent = "disconnected"; }
}
tick(); setInterval(tick, 500);
</script></body></html>
"""


class LiveView:
    def __init__(self, state: LiveState, out_dir: Path, port: int = 8765):
        handler = _handler(state, Path(out_dir))
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            from ..errors import EEGInputError

            raise EEGInputError(f"cannot serve the live view on 127.0.0.1:{port} ({e}); choose another --view-port") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="stream-view", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> LiveView:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(state: LiveState, out_dir: Path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/state.json":
                self._send(200, "application/json", json.dumps(state.snapshot()).encode())
            elif path.startswith("/images/") and IMAGE_RE.fullmatch(path[len("/images/"):]):
                file = out_dir / path[len("/images/"):]
                if file.is_file():
                    self._send(200, "image/png", file.read_bytes())
                else:
                    self._send(404, "text/plain", b"not yet")
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            log.debug("view: " + fmt, *args)

    return Handler
