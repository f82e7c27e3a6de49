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
  freqbackdoor screen photos/ --dataset photos32 -o scores.csv
                                              score a folder with the pipeline's photos32 detector
  freqbackdoor screen x.npy --detector my_detector.pt --threshold 0.9 -o scores.csv
                                              score an .npy array with a named checkpoint
  freqbackdoor screen photos/ --detector authors-cifar10 -o scores.csv
                                              the authors' published CIFAR-10 detector
  freqbackdoor fingerprint results > a.tsv    hash every result (timings left out) ...
  freqbackdoor fingerprint --compare a.tsv    ... and list what a later run changed
  freqbackdoor config-reference --check       is docs/configuration.md current with the schema?
  snakemake --cores all                       the whole pipeline on the demo data

`freqbackdoor COMMAND --help` describes a command's options.
"""

SCREEN_EXAMPLES = """examples:
  freqbackdoor screen photos/ --dataset photos32 -o scores.csv
      the Section-4 DCT detector the pipeline trained on photos32 (results/detectors/photos32/)
  freqbackdoor screen photos/ --dataset photos32 --upgraded -o scores.csv
      its Section-5.4 upgrade, which also catches smooth triggers (results/smooth/photos32/)
  freqbackdoor screen x.npy --detector results/detectors/digits32/cnn6_kmax128_dct.pt -o s.csv
      any detector checkpoint (.pt with its .json sidecar beside it)
  freqbackdoor screen photos/ --detector authors-cifar10 -o scores.csv
      the authors' published CIFAR-10 detector (authors-cifar10-tuned: after their smooth-
      trigger upgrade), converted from their Keras file: a copy in --authors-models, else in
      $FREQBACKDOOR_AUTHORS_MODELS, else resources/raw/authors_models, else downloaded there
      and checked by sha256

Writes the CSV (file, score, flagged, error) and a JSON summary beside it (NAME.summary.json),
and prints the summary. Every path named like an image gets a row: one that cannot be read (a
corrupt file, a dangling or looping link, a folder called x.png) has no score and says why.

Exit status: 0 every image was scored; 1 some could not be read (named on stderr and in the
CSV's error column; the rest are still scored); 2 bad arguments, an input or detector that
cannot be used, or an output that cannot be written (nothing is written then).
"""


def _cmd_triggers(args: argparse.Namespace) -> int:
    from .triggers.registry import available_triggers, trigger_source

    for name in available_triggers():
        print(f"{name:12s} {trigger_source(name)}")
    return 0


def _cmd_dct(args: argparse.Namespace) -> int:
    from .frequency.dct import write_dct_cache
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


def _unwritable(output) -> str | None:
    """Why files cannot be written at ``output`` (its folder made if missing), else None."""
    import os

    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create its folder {folder}: {exc.strerror or exc}"
    if output.is_dir():
        return "it is a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable"
    return None


def _cmd_screen(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .detection.screening import (
        authors_detector,
        choose_threshold,
        is_authors_detector,
        load_detector,
        pipeline_detector,
        screen_path,
        screening_summary,
        summary_text,
    )
    from .errors import DataError
    from .io import atomic_path, write_json
    from .logs import progress, setup_logging

    setup_logging()
    if args.upgraded and not args.dataset:
        print("freqbackdoor screen: --upgraded needs --dataset", file=sys.stderr)
        return 2
    output = Path(args.output)
    unwritable = _unwritable(output)
    if unwritable:  # before scoring: the user should not wait for an error they can fix now
        print(f"freqbackdoor screen: cannot write -o {output}: {unwritable}", file=sys.stderr)
        return 2
    try:
        if (
            args.detector
            and is_authors_detector(args.detector)
            and not Path(args.detector).exists()
        ):
            model, meta = authors_detector(args.detector, args.authors_models, device=args.device)
            checkpoint = args.detector
        else:
            checkpoint = (
                Path(args.detector)
                if args.detector
                else pipeline_detector(args.results, args.dataset, args.upgraded)
            )
            model, meta = load_detector(checkpoint, device=args.device, dataset=args.dataset)
        threshold, source = choose_threshold(meta, args.threshold)
        table = screen_path(model, args.input, threshold, args.resize, progress=progress)
    except DataError as exc:
        print(f"freqbackdoor screen: {exc}", file=sys.stderr)
        return 2
    summary = screening_summary(table, threshold, source, str(checkpoint), meta)
    summary["input"] = str(args.input)
    try:
        with atomic_path(output) as tmp:
            table.to_csv(tmp, index=False)
        write_json(output.with_suffix(".summary.json"), summary)
    except OSError as exc:
        print(
            f"freqbackdoor screen: cannot write -o {output}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    for row in table[table["error"] != ""].itertuples():
        print(f"freqbackdoor screen: {row.error}", file=sys.stderr)
    print(summary_text(summary))
    print(f"wrote {output} and {output.with_suffix('.summary.json')}")
    return 1 if summary["unreadable"] else 0


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from .errors import DataError
    from .reproducibility import differences, fingerprint_text, fingerprints, parse

    try:
        prints = fingerprints(args.results)
        if args.compare is None:
            sys.stdout.write(fingerprint_text(prints))
            return 0
        with open(args.compare) as fh:
            before = parse(fh, args.compare)
    except (DataError, OSError) as exc:
        raise SystemExit(f"freqbackdoor fingerprint: {exc}") from None
    diff = differences(before, prints)
    for kind, paths in diff.items():
        for path in paths:
            print(f"{kind}\t{path}")
    same = len(before.keys() & prints.keys()) - len(diff["changed"])
    print(
        f"{same} of {len(prints)} result files identical to {args.compare}; "
        f"{len(diff['changed'])} changed, {len(diff['added'])} added, "
        f"{len(diff['removed'])} removed",
        file=sys.stderr,
    )
    return 1 if any(diff.values()) else 0


def _cmd_readme_claims(args: argparse.Namespace) -> int:
    from .errors import DataError
    from .provenance import update_readme

    results = args.results
    try:
        update_readme(
            args.readme,
            f"{results}/report/claims.csv",
            f"{results}/report/provenance.json",
            args.authors_page,
        )
    except (DataError, OSError) as exc:
        raise SystemExit(f"freqbackdoor readme-claims: {exc}") from None
    print(
        f"rewrote the demo claims block of {args.readme} and the authors' detectors block of "
        f"{args.authors_page} from {results}/"
    )
    return 0


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from .config.reference import configuration_reference
    from .errors import ConfigError

    try:
        text = configuration_reference(yaml.safe_load(Path(args.schema).read_text()))
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"freqbackdoor config-reference: {args.schema}: {exc}") from None
    output = Path(args.output)
    if args.check:
        if not output.is_file() or output.read_text() != text:
            print(
                f"{output} differs from the reference generated from {args.schema}; "
                "run `freqbackdoor config-reference` to regenerate it",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date with {args.schema}")
        return 0
    from .io import atomic_path

    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        tmp.write_text(text)
    print(f"wrote {output} from {args.schema}")
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

    screen = commands.add_parser(
        "screen",
        help="flag triggered images in a folder or an .npy array with a trained detector",
        description="Score every image with a detector: the probability that it carries a "
        "backdoor trigger, and whether it reaches the threshold.",
        epilog=SCREEN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    screen.add_argument("input", help="a folder of images (searched recursively) or a uint8 .npy")
    which = screen.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--detector",
        help="a detector checkpoint .pt (its .json beside it), or authors-cifar10 / "
        "authors-cifar10-tuned: the authors' published detectors",
    )
    which.add_argument("--dataset", help="use the pipeline's detector of this dataset")
    screen.add_argument(
        "--upgraded", action="store_true", help="with --dataset: the smooth-trigger upgrade"
    )
    screen.add_argument(
        "--results", default="results", help="the pipeline's results folder (default: results)"
    )
    screen.add_argument(
        "--authors-models",
        help="folder of the authors' Keras files (default: $FREQBACKDOOR_AUTHORS_MODELS, else "
        "resources/raw/authors_models; a missing file is downloaded there)",
    )
    screen.add_argument(
        "--threshold",
        type=float,
        help="flag at this score (default: the detector's calibrated threshold, else 0.5)",
    )
    screen.add_argument(
        "--resize",
        choices=["stretch", "center_crop"],
        default="stretch",
        help="how images of another size reach the detector's input size (default: stretch)",
    )
    screen.add_argument("-o", "--output", required=True, help="the CSV to write")
    screen.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    screen.set_defaults(func=_cmd_screen)

    fingerprint = commands.add_parser(
        "fingerprint",
        help="hash every result file (timings left out), or compare with an earlier run's hashes",
        description="Print 'sha256<TAB>path' for every file under RESULTS except benchmarks/ "
        "and JSON 'timing' records; with --compare, list the files that differ from an "
        "earlier listing (exit status 1 if any).",
    )
    fingerprint.add_argument(
        "results", nargs="?", default="results", help="results folder (default: results)"
    )
    fingerprint.add_argument("--compare", help="an earlier run's listing to compare with")
    fingerprint.set_defaults(func=_cmd_fingerprint)

    readme = commands.add_parser(
        "readme-claims",
        help="rewrite the documentation's demo results blocks from a finished run",
        description="Replace the block between the demo-claims markers of README.md with the "
        "claims table of RESULTS/report/claims.csv, and the block between the "
        "authors-detectors markers of docs/authors-models.md with the comparison of the "
        "authors' detectors in RESULTS/tables/, each stamped with the run's commit and time "
        "(RESULTS/report/provenance.json).",
    )
    readme.add_argument("--results", default="results", help="results folder (default: results)")
    readme.add_argument(
        "--readme", default="README.md", help="the file with the claims block (default: README.md)"
    )
    readme.add_argument(
        "--authors-page",
        default="docs/authors-models.md",
        help="the file with the authors' detectors block (default: docs/authors-models.md)",
    )
    readme.set_defaults(func=_cmd_readme_claims)

    reference = commands.add_parser(
        "config-reference",
        help="write docs/configuration.md from config/schema.yaml, or check that it is current",
        description="Generate the configuration reference (every key's type, allowed values and "
        "description) from the schema; with --check, exit 1 if OUTPUT differs from it.",
    )
    reference.add_argument(
        "--schema", default="config/schema.yaml", help="default: config/schema.yaml"
    )
    reference.add_argument(
        "--output", default="docs/configuration.md", help="default: docs/configuration.md"
    )
    reference.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if OUTPUT is not current"
    )
    reference.set_defaults(func=_cmd_config_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
