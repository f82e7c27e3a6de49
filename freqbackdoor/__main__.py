"""Command-line entry point: ``freqbackdoor`` / ``python -m freqbackdoor``.

Commands reuse the library outside Snakemake; the full pipeline is ``snakemake --cores all``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__

EXAMPLES = """examples:
  freqbackdoor triggers                       list registered triggers and their sources
  freqbackdoor dct images.npy dct.npy         DCT of a uint8 N x H x W x 3 array, with a sidecar
  snakemake --cores all                       the whole pipeline on the demo data
"""


def _cmd_triggers(args: argparse.Namespace) -> int:
    from .triggers import available_triggers, trigger_source

    for name in available_triggers():
        print(f"{name:12s} {trigger_source(name)}")
    return 0


def _cmd_dct(args: argparse.Namespace) -> int:
    from .dct import write_dct_cache
    from .io import load_npy
    from .logs import progress, setup_logging

    setup_logging()
    images = load_npy(args.images)
    if images.dtype != np.uint8:
        raise SystemExit(f"{args.images}: expected uint8 images, got {images.dtype}")
    sidecar = args.output.removesuffix(".npy") + ".json"
    write_dct_cache(images, args.output, sidecar, device=args.device, progress=progress)
    print(f"wrote {args.output} and {sidecar}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freqbackdoor",
        description="Frequency-domain analysis of backdoor triggers (Zeng et al., ICCV 2021).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("triggers", help="list the registered triggers").set_defaults(
        func=_cmd_triggers
    )
    dct = commands.add_parser("dct", help="DCT of an .npy image array (memory-mappable output)")
    dct.add_argument("images", help="uint8 N x H x W x 3 .npy file")
    dct.add_argument(
        "output", help="output .npy file (float32); a .json sidecar is written beside it"
    )
    dct.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    dct.set_defaults(func=_cmd_dct)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
