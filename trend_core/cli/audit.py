"""`trend audit`: a battery of adaptive attacks on one model or a majority-vote ensemble, with sanity flags."""

from __future__ import annotations

import argparse
import sys

from trend_core.cli.common import add_common, emit_json, parse_model_names, work_bar, zoo_from
from trend_core.errors import TrendError


def register(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser(
        "audit",
        help="robustness audit: APGD, Square, BPDA, EOT and transfer attacks, with flags",
        description="Robust accuracy of one model (or the majority vote of several, --ensemble) "
        "under each attack of the battery and in the worst case per image, and sanity "
        "flags that say when the figures overstate robustness.",
    )
    au.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="NAME",
        help="the model, or the ensemble's members (zoo names, imported user/<dataset>/<name> ones too)",
    )
    au.add_argument("--ensemble", action="store_true", help="audit the majority vote of --models")
    au.add_argument("--eps", nargs="+", required=True, metavar="E", help="L-inf budgets in (0, 1]")
    level = au.add_mutually_exclusive_group()
    level.add_argument("--quick", dest="level", action="store_const", const="quick", help="the quick battery (default)")
    level.add_argument(
        "--thorough",
        dest="level",
        action="store_const",
        const="thorough",
        help="more steps, restarts, queries, tie-break draws and every surrogate",
    )
    au.add_argument("--limit", default=None, help="use the first N test images")
    au.add_argument("--no-cache", action="store_true", help="compute afresh and store nothing")
    au.add_argument("--json", action="store_true")
    add_common(au)
    au.set_defaults(func=cmd_audit, level="quick")


def cmd_audit(args: argparse.Namespace) -> int:
    # local: keeps this torch-free module's start-up light
    import pandas as pd

    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.experiments.audit import run_audit
    from trend_core.storage.store import get_store

    names = list(dict.fromkeys(spec.name for spec in parse_model_names(args.models)))  # imported user/... too
    if len(names) > 1 and not args.ensemble:
        raise TrendError(f"{len(names)} models given: add --ensemble to audit their majority vote, or name one model.")
    epsilons = []
    for text in args.eps:
        try:
            epsilons.append(float(text))
        except ValueError:
            raise TrendError(f"--eps takes numbers, got {text!r}.") from None
    limit = None
    if args.limit is not None:
        try:
            limit = int(args.limit)
        except ValueError:
            raise TrendError(f"--limit must be a whole number, got {args.limit!r}.") from None
    zoo = zoo_from(args)
    store = None if args.no_cache else get_store(args.home)
    with work_bar("audit") as progress:
        report = run_audit(
            names,
            zoo=zoo,
            ensemble=bool(args.ensemble),
            epsilons=epsilons,
            level=args.level,
            limit=limit,
            device=args.device,
            cache=store,
            progress=progress,
        )
    if args.json:
        emit_json(report.to_dict())
        return 0
    what = "majority vote of " + ", ".join(report.models) if report.ensemble else report.models[0]
    print(
        f"audit ({report.level}) of the {what} on {report.n_images} test images; clean accuracy "
        f"{report.clean_accuracy:.1%}"
    )
    table = report.robust.pivot_table(index="attack", columns="eps", values="robust_accuracy", sort=False)
    worst = report.worst_case.set_index("eps")["robust_accuracy"].rename("worst case (every attack)")
    table = pd.concat([table, worst.to_frame().T])
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print((100 * table).to_string(float_format=lambda v: f"{v:.1f}", na_rep="-"))
    print("(robust accuracy %, rows: attack, columns: eps)")
    for flag in report.flags:
        print(f"[{'FIRED' if flag.fired else 'ok'}] {flag.name}: {flag.sentence}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
