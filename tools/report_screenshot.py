"""The screenshot of the report in the docs: `python -m tools.report_screenshot`.

Opens reports/index.html (what `dvc repro` writes) in headless Chromium with no network and saves
the top of the page as docs/report.png. Needs Debian's `chromium` (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.browser import screenshot


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", type=Path, default=Path("reports/index.html"))
    ap.add_argument("--out", type=Path, default=Path("docs/report.png"))
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1700)
    args = ap.parse_args(argv)
    if not args.report.is_file():
        raise SystemExit(f"error: --report {args.report}: not found (run `dvc repro` first)")
    try:
        screenshot(args.report, args.out, args.width, args.height)
    except (FileNotFoundError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
