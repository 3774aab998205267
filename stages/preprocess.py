"""Stage `preprocess`: decode every indexed image and mask once, into uint8 arrays at one size.

The work is done by localize.preprocessing; this is its command line (dvc.yaml runs it).
"""

from __future__ import annotations

import argparse

from localize.config import load_section
from localize.preflight import check_and_clear
from localize.preprocessing import PreprocessParams, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="index CSV written by the index stage")
    parser.add_argument("--out", required=True, help="folder to write the arrays and manifest.json into")
    args = parser.parse_args(argv)
    try:
        check_and_clear("params.yaml", [args.index, args.out])
        cfg = load_section(PreprocessParams, "preprocess")
        run(args.index, args.out, cfg)
    except (ValueError, OSError) as e:  # ImageReadError, IndexFileError and ParamsError are ValueErrors
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:
        raise SystemExit("preprocess: interrupted; nothing was written, rerun the stage") from None


if __name__ == "__main__":
    main()
