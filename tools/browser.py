"""Open a page in headless Chromium with no network: what it loaded, and a screenshot.

Debian's `chromium` package (`apt-get install -y chromium`; .ci/run installs it when missing).
Every host name resolves to nothing (--host-resolver-rules), and a fresh profile in a temp folder
keeps the user's own profile out of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Written into a copy of the page: after `load`, every image's natural width, every resource the
# page fetched (Resource Timing), and the first cell of every table row, as JSON in a <pre>.
PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; });
  var resources = performance.getEntriesByType('resource').map(function (e) { return e.name; });
  var rows = Array.prototype.map.call(document.querySelectorAll('tbody tr'),
                                      function (tr) { return tr.cells[0].textContent; });
  var pre = document.createElement('pre');
  pre.id = 'browser-probe';
  pre.textContent = JSON.stringify({images: images, resources: resources, rows: rows});
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--hide-scrollbars"]
        if os.geteuid() == 0:
            cmd.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, check=False)


def probe(page: Path, timeout: float = 60) -> dict:
    """Load a copy of `page` with PROBE added and its Content-Security-Policy removed (so that a
    reference to anything outside the page would be fetched, and seen), and return PROBE's JSON."""
    doc = page.read_text(encoding="utf-8")
    doc = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", doc)
    if "</head>" not in doc:
        raise ValueError(f"{page}: no </head>")
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(doc.replace("</head>", PROBE + "\n</head>", 1), encoding="utf-8")
        proc = _run(["--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], timeout)
    m = re.search(r'<pre id="browser-probe">(.*?)</pre>', proc.stdout, re.S)
    if not m:
        raise RuntimeError(f"Chromium returned no probe for {page} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    import html

    return json.loads(html.unescape(m.group(1)))


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400, timeout: float = 60) -> None:
    """A PNG of the top `height` pixels of `page`, as a `width`-pixel window shows it, CSP intact."""
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                 page.resolve().as_uri()], timeout)
    if not png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {page} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
