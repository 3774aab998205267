"""Stage `index`: list every image of a Dolos-layout tree, check it, and write data/index.csv.

The work is done by localize.indexing; this is its command line (dvc.yaml runs it).
"""

from __future__ import annotations

import argparse

from localize.config import load_section
from localize.indexing import IndexParams, run
from localize.preflight import check_and_clear


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Dolos-layout folder holding real/ and fake/")
    parser.add_argument("--out", required=True, help="index CSV to write")
    parser.add_argument("--problems", required=True, help="problems report CSV to write")
    parser.add_argument("--metrics", required=True, help="JSON metrics to write")
    args = parser.parse_args(argv)
    try:
        check_and_clear("params.yaml", [args.out, args.problems, args.metrics])
        cfg = load_section(IndexParams, "index")
        run(args.root, args.out, args.problems, args.metrics, cfg)
    except (ValueError, OSError) as e:  # IndexDataError, ImageReadError and ParamsError are ValueErrors
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("index: interrupted; nothing was written, rerun the stage") from None


if __name__ == "__main__":
    main()
