"""The results of a run as one self-contained HTML page, and the compact headline `dvc metrics show` reads.

Pure functions: text and bytes in, text out. stages/report.py reads the files and writes the page.

The page fetches nothing: every image is a `data:` URI, the style is inline, there is no script,
and a Content-Security-Policy meta tag forbids any other source, so it opens from `file://` on a
machine with no network. Tables are rendered from the Markdown that evaluate and robustness write,
every row of it, so a row a later recipe adds (a baseline, a ceiling) appears without a change here.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping

# No source but the page itself: images only as data: URIs, style only inline, no script at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

# Images above this many bytes are embedded as JPEG when that is smaller (photos: the overlays).
MAX_PNG_BYTES = 256 * 1024

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #1b1b1b; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
tr.baseline td { color: #555; background: #fafafa; }
.scroll { overflow-x: auto; }
.headline { font-size: 1.15em; background: #f4f8ff; border: 1px solid #cdd9f0; padding: .6em 1em; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figcaption { font-size: 13px; color: #444; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline_markdown(text: str) -> str:
    """Escape `text` and render the Markdown that evaluate's tables use: **bold**, *italic*, _italic_, `code`."""
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", out)
    return re.sub(r"(?<![\w])_(?!\s)(.+?)(?<!\s)_(?![\w])", r"<i>\1</i>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(md: str) -> str:
    """Render Markdown as evaluate and robustness write it: pipe tables, paragraphs and `- ` lists.

    Every table row becomes a <tr>; a row whose first cell is in italics (`_baseline: ..._`) is a
    baseline row and gets class="baseline".
    """
    blocks: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            blocks.append(_table(rows))
        elif line.lstrip().startswith("- "):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                items.append(f"<li>{inline_markdown(lines[i].lstrip()[2:])}</li>")
                i += 1
            blocks.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith(("|", "- ")):
                para.append(lines[i].strip())
                i += 1
            blocks.append(f"<p>{inline_markdown(' '.join(para))}</p>")
        else:
            i += 1
    return "\n".join(blocks)


def _table(rows: list[str]) -> str:
    header, body = _cells(rows[0]), rows[1:]
    if body and re.fullmatch(r"[\s|:-]+", body[0]):
        body = body[1:]
    out = ['<div class="scroll"><table>', "<thead><tr>"]
    out += [f"<th>{inline_markdown(c)}</th>" for c in header]
    out.append("</tr></thead><tbody>")
    for row in body:
        cells = _cells(row)
        first = cells[0] if cells else ""
        cls = ' class="baseline"' if first.startswith("_") and first.endswith("_") else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{inline_markdown(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def table_rows(md: str) -> list[str]:
    """The first cell of every body row of every table in `md`, as written (for checks)."""
    rows, in_table = [], False
    for line in md.splitlines():
        if line.lstrip().startswith("|"):
            if in_table and not re.fullmatch(r"[\s|:-]+", line):
                rows.append(_cells(line)[0])
            in_table = True
        else:
            in_table = False
    return rows


def image_data_uri(data: bytes) -> str:
    """A data: URI for an image file's bytes: PNG as is, or a large one as JPEG when that is smaller."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    if len(data) > MAX_PNG_BYTES:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=88, optimize=True)
        if buf.tell() < len(data):
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _pct(v: object) -> str:
    return f"{100 * v:.1f}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _with_interval(sec: Mapping, key: str) -> str:
    """sec[key] ×100, with its interval: sec["low"]/sec["high"] for "iou", or a [low, high] list under key_ci."""
    lo_hi = (sec.get("low"), sec.get("high")) if key == "iou" else tuple(sec.get(f"{key}_ci") or (None, None))
    s = _pct(sec[key])
    if len(lo_hi) == 2 and all(isinstance(x, int | float) for x in lo_hi):
        s += f" ({_pct(lo_hi[0])}–{_pct(lo_hi[1])})"
    return s


HEADLINE_NAMES = {"in_domain": "in-domain", "held_out": "held-out"}
INTERVAL_KEYS = ("low", "high")
COLUMN_NAMES = {"iou": "mean IoU", "prior": "location prior", "auc": "detection AUC (real vs fake)"}


def headline_markdown(summary: Mapping) -> str:
    """summary.json's headline as Markdown, ×100 with intervals where summary.json has them.

    A table: one row per section that holds a mean IoU (in-domain, held-out, and any a later
    evaluate adds, such as a ceiling), one column per number those sections hold (mean IoU,
    location prior, detection AUC), and one column per baseline that has its own in-domain and
    held-out means (such as `texture`). Then every other number of `real_faces` and `baselines`.
    """
    means = {k: v for k, v in summary.items() if isinstance(v, Mapping) and _number(v.get("iou"))}
    baselines = summary.get("baselines") if isinstance(summary.get("baselines"), Mapping) else {}
    per_row = {k: v for k, v in baselines.items()
               if isinstance(v, Mapping) and any(isinstance(v.get(r), Mapping) for r in means)}
    lines = []
    if means:
        cols: list[str] = []
        for sec in means.values():
            cols += [k for k, v in sec.items() if k not in cols and k not in INTERVAL_KEYS and _number(v)]
        head = [COLUMN_NAMES.get(c, c.replace("_", " ")) for c in cols] + [f"{b} baseline" for b in per_row]
        lines += ["| ×100, 95% intervals | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
        for key, sec in means.items():
            cells = [_with_interval(sec, c) if c in sec else "" for c in cols]
            cells[0] = f"**{cells[0]}**" if cols and cols[0] == "iou" and cells[0] else cells[0]
            cells += [_with_interval(b[key], "iou") if isinstance(b.get(key), Mapping) and _number(b[key].get("iou"))
                      else "" for b in per_row.values()]
            lines.append(f"| {HEADLINE_NAMES.get(key, key.replace('_', ' '))} | " + " | ".join(cells) + " |")
        lines.append("")
    for key in ("real_faces", "baselines"):
        sec = summary.get(key)
        if not isinstance(sec, Mapping):
            continue
        items = []
        for k, v in sec.items():
            if isinstance(v, Mapping):
                rest = {n: x for n, x in flatten(v).items() if n.split(".")[0] not in means}
                items += [f"{k} {n.replace('_', ' ')} {_pct(x)}" for n, x in rest.items()]
            elif _number(v):
                items.append(f"{k.replace('_', ' ')} {_with_interval(sec, k)}")
        if items:
            lines.append(f"- {key.replace('_', ' ')}: " + ", ".join(items))
    return "\n".join(lines).strip() + "\n" if lines else "summary.json holds no headline.\n"


def headline_html(summary: Mapping) -> str:
    return ('<div class="headline">' + markdown_to_html(headline_markdown(summary)) +
            "<small>IoU ×100 with 95% bootstrap intervals over test images (Dolos' protocol, threshold 0.5)."
            "</small></div>")


def flatten(d: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping, keys joined with '.'; lists (intervals) and text left out."""
    out: dict[str, float] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{name}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[name] = v
    return out


RESULT_SECTIONS = ("in_domain", "held_out", "real_faces", "baselines", "valid_thresholds")


def _leaves(d: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def runtime_html(summary: Mapping) -> str:
    """How the run was computed: summary.json's `runtime` (device, precision, threads), then every
    other section that is not a result (a training-budget note, say), key by key."""
    rows = []
    for key, sec in summary.items():
        if key in RESULT_SECTIONS or not isinstance(sec, Mapping) or _number(sec.get("iou")):
            continue
        prefix = "" if key == "runtime" else f"{key}."
        rows += [(f"{prefix}{k}".replace("_", " "), v) for k, v in _leaves(sec)]
    if not rows:
        return "<p>summary.json records no runtime.</p>"
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(', '.join(map(str, v)) if isinstance(v, list) else v)}</td></tr>"
                   for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


# The compact headline: summary.json's in-domain and held-out means with their interval and prior,
# the real faces, the baselines, and any other section that holds a mean IoU (a ceiling), ×100.
# Left out: numbers the tables and the report hold but `dvc metrics show` has no room for (AUC,
# flagged area, the all-real baseline that is 0 by construction, a baseline's own real faces and
# threshold), and every section that is not a result (thresholds chosen on valid, runtime, notes).
HEADLINE_DROP = ("auc", "fake_area", "all-real", "real_faces_clean", "threshold", "low", "high")
SHORT = {"in_domain": "in", "held_out": "out", "real_faces": "real", "baselines": "base"}
MEANS = ("in_domain", "held_out")


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _collapsed(d: Mapping) -> dict:
    """Numeric leaves ×100 under short names; a mean with an interval ({iou, low, high}) becomes its mean."""
    out: dict = {}
    for k, v in d.items():
        if k in HEADLINE_DROP:
            continue
        if isinstance(v, Mapping):
            if _number(v.get("iou")):
                out[SHORT.get(k, k)] = round(100 * v["iou"], 1)
            elif sub := _collapsed(v):
                out[SHORT.get(k, k)] = sub
        elif _number(v):
            out[SHORT.get(k, k)] = round(100 * v, 1)
    return out


def compact_headline(summary: Mapping) -> dict:
    """The metrics `dvc metrics show` and `dvc exp show` read, narrow enough for 200 columns: the
    in-domain and held-out means with their interval as one `ci` text ("low–high") and their prior;
    the real faces; every baseline (a baseline with in-domain and held-out means gives both); and
    the mean of any other section that holds one (a ceiling). All ×100 to one decimal, as in the
    tables. A baseline or a ceiling that a later evaluate adds to summary.json appears here by itself."""
    out: dict = {}
    for key, sec in summary.items():
        if not isinstance(sec, Mapping):
            continue
        if key in MEANS:
            row = {"iou": round(100 * sec["iou"], 1)} if _number(sec.get("iou")) else {}
            if row and _number(sec.get("low")) and _number(sec.get("high")):
                row["ci"] = f"{_pct(sec['low'])}–{_pct(sec['high'])}"
            row.update({k: v for k, v in _collapsed(sec).items() if k != "iou"})
            out[SHORT[key]] = row
        elif key in SHORT:
            if sub := _collapsed(sec):
                out[SHORT[key]] = sub
        elif _number(sec.get("iou")):
            out[key] = round(100 * sec["iou"], 1)
    return out


def figure(uri: str, caption: str, width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    return (f'<figure><img src="{esc(uri)}" alt="{esc(caption)}"{style}>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """The whole document: `sections` are (heading, inner HTML), in order."""
    ids = [re.sub(r"[^a-z0-9]+", "-", h.lower()).strip("-") for h, _ in sections]
    nav = "<nav>" + " · ".join(f'<a href="#{i}">{esc(h)}</a>' for i, (h, _) in zip(ids, sections)) + "</nav>"
    body = nav + "\n" + "\n".join(f'<section id="{i}">\n<h2>{esc(h)}</h2>\n{inner}\n</section>'
                                   for i, (h, inner) in zip(ids, sections))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n")


EXTERNAL = re.compile(r"""\b(?:src|href|action|poster|srcset|background)\s*=\s*(?!["']?\s*(?:data:|#))|"""
                      r"""url\(\s*(?!["']?\s*data:)|@import""", re.I)


def external_references(doc: str) -> list[str]:
    """Attributes or CSS in `doc` that would make a browser fetch something other than a data: URI."""
    return [m.group(0) for m in EXTERNAL.finditer(doc)]
