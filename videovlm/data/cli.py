"""``videovlm data``: generate the synthetic data set (``synth``), print its card (``card``),
and check that a manifest's videos decode (``check``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = sub.add_parser("synth", help="generate the synthetic temporal video-language data set", description="Generate small synthetic videos with captions, QA (incl. temporal questions), instructions and image captions.")
    synth.add_argument("output", type=Path, metavar="OUTPUT", help="output folder (gets train/, val/, test/, stats.json, README.md)")
    synth.add_argument("--train", type=int, default=2000, help="training videos (default 2000)")
    synth.add_argument("--val", type=int, default=200, help="validation videos (default 200)")
    synth.add_argument("--test", type=int, default=200, help="test videos (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="data set seed (default 0)")
    synth.add_argument("--size", type=int, default=112, help="frame side in pixels (default 112)")
    synth.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    synth.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    synth.add_argument("--workers", type=int, default=2, help="worker processes; the output does not depend on it (default 2)")
    synth.add_argument("--overwrite", action="store_true", help="replace the splits of an existing generated data set in OUTPUT")
    synth.add_argument("--card", type=Path, default=None, help="also write the dataset card to this path (e.g. data/synthetic/README.md)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    card = sub.add_parser("card", help="print the dataset card of a generated data set (from its stats.json)")
    card.add_argument("output", type=Path, metavar="OUTPUT", help="a folder written by `videovlm data synth`")
    check = sub.add_parser("check", help="list the videos of a data file that will not decode, and why (exit 1 if any)")
    check.add_argument("manifest", type=Path, metavar="MANIFEST", help="captions CSV, QA / instructions / multiple-choice JSON")
    check.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from videovlm.data.synthetic.stats import render_card

    if args.data_command == "check":
        return _check(args)
    if args.data_command == "card":
        stats_path = args.output / "stats.json"
        if not stats_path.is_file():
            print(f"videovlm data card: {stats_path} not found (generate with `videovlm data synth {args.output}`)", file=sys.stderr)
            return 2
        print(render_card(json.loads(stats_path.read_text(encoding="utf-8"))))
        return 0

    from videovlm.data.synthetic import generate

    try:
        result = generate(args.output, train=args.train, val=args.val, test=args.test, seed=args.seed, size=args.size, frames=args.frames, fps=args.fps, workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    except (ValueError, FileExistsError, NotADirectoryError) as e:
        print(f"videovlm data synth: {e}", file=sys.stderr)
        return 2
    stats = json.loads((result.output_dir / "stats.json").read_text(encoding="utf-8"))
    card = render_card(stats, seconds=result.seconds, cpu_seconds=result.cpu_seconds, workers=result.workers)
    (result.output_dir / "README.md").write_text(card, encoding="utf-8")
    if args.card is not None:
        args.card.parent.mkdir(parents=True, exist_ok=True)
        args.card.write_text(card, encoding="utf-8")
    total = sum(result.counts.values())
    print(f"wrote {total} videos ({', '.join(f'{k} {v}' for k, v in result.counts.items())}) to {result.output_dir} in {result.seconds:.1f} s ({result.cpu_seconds:.1f} s CPU)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from videovlm.data.check import check_manifest
    from videovlm.data.formats import DataFormatError

    try:
        report = check_manifest(args.manifest, progress=not args.quiet)
    except (DataFormatError, OSError) as e:
        print(f"videovlm data check: {e}", file=sys.stderr)
        return 2
    for path, reason in report.failures.items():
        print(f"{path}\t{reason}")
    reasons = ", ".join(f"{n} {kind}" for kind, n in sorted(report.reasons.items()))
    summary = f"{report.manifest} ({report.kind}): {report.checked} files checked, {len(report.failures)} will not load" + (f" ({reasons})" if reasons else "")
    print(summary, file=sys.stderr)
    return 1 if report.failures else 0
