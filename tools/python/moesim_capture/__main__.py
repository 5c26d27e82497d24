"""python3 -m moesim_capture merge -o OUT.h5 PART.h5 ... [--moesim BIN]: joins per-rank part files
into one trace (and, given the moesim binary, validates it). Exit 0 on success, 2 on bad input
with one line naming the file and what is wrong."""
import argparse
import subprocess
import sys

from .errors import CaptureError
from .merge import merge


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m moesim_capture")
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="join per-rank part files into one trace")
    m.add_argument("parts", nargs="+", help="part files written with TraceWriter(..., ranks=[...])")
    m.add_argument("-o", "--output", required=True, help="trace to write")
    m.add_argument("--moesim", help="moesim binary: run `moesim validate` on the result")
    args = ap.parse_args(argv)
    try:
        out = merge(args.output, args.parts)
    except CaptureError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{out}: merged {len(args.parts)} part file(s)")
    if args.moesim:
        return subprocess.run([args.moesim, "validate", out]).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
