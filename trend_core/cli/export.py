"""`trend ensemble export`: a chosen majority vote as one deployable .pt2 file, with its robustness card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trend_core.cli.common import add_common, emit_json, load_models, parse_model_names, work_bar, zoo_from
from trend_core.cli.ensemble import _eps_list, _one_dataset
from trend_core.cli.transfer import _number
from trend_core.errors import TrendError

FILES = ("ensemble.pt2", "card.json", "card.html")
DEFAULT_LIMIT = 200


def register(sub: argparse._SubParsersAction) -> None:
    ens = sub.add_parser("ensemble", help="export a chosen majority-vote ensemble with its robustness card")
    esub = ens.add_subparsers(dest="ensemble_command", metavar="ACTION")
    esub.required = True
    ex = esub.add_parser(
        "export",
        help="write DIR/ensemble.pt2 (a torch.export program of the vote) and its robustness card",
        description="The majority vote of --models as one torch.export program (pixels in [0, 1] -> logits whose "
        "argmax is the vote) that plain torch loads, checked by loading it back, and its robustness card "
        "(card.json, card.html): clean accuracy of each member and of the vote, A-GD and the audit's worst "
        "case per eps with 95% intervals, the audit's flags, TM among the members, and the commands that "
        "reproduce it.",
    )
    ex.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="NAME",
        help="the ensemble's members: zoo names, imported user/<dataset>/<name> ones too",
    )
    ex.add_argument("--out", required=True, metavar="DIR", help="folder to write ensemble.pt2, card.json, card.html")
    ex.add_argument("--eps", nargs="+", default=None, metavar="E", help="eps values (default: the dataset's)")
    ex.add_argument("--limit", default=str(DEFAULT_LIMIT), help=f"test images measured (default {DEFAULT_LIMIT})")
    ex.add_argument("--steps", default="20", help="A-GD steps (default 20)")
    ex.add_argument(
        "--thorough", dest="level", action="store_const", const="thorough", help="the thorough audit (default quick)"
    )
    ex.add_argument("--no-cache", action="store_true", help="compute afresh and store nothing")
    ex.add_argument("--json", action="store_true", help="print the card as JSON")
    add_common(ex)
    ex.set_defaults(func=cmd_export, level="quick")


def output_folder(text: str) -> Path:
    """The folder ``--out`` names, created when missing; one sentence when it is a file or cannot be written."""
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise TrendError(f"--out {text} is a file; name a folder for ensemble.pt2, card.json and card.html.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".trend-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrendError(f"--out {text} cannot be written ({exc.strerror or exc}); name another folder.") from None
    for name in FILES:
        if (out / name).is_dir():
            raise TrendError(f"{out / name} is a folder; remove it or name another --out.")
    return out


def cmd_export(args: argparse.Namespace) -> int:
    # local: loads torch only when the command runs (keeps start-up fast)
    from trend_core.data.datasets import load_dataset
    from trend_core.ensemble.export import export_ensemble
    from trend_core.experiments.robustness_card import robustness_card
    from trend_core.models.checkpoints import atomic_write_bytes
    from trend_core.nn.vote import MajorityVote
    from trend_core.plots.card import card_html, card_json
    from trend_core.service.commands import card_commands
    from trend_core.storage.store import get_store

    found = _one_dataset(parse_model_names(args.models))  # imported user/... networks too
    if len(found) < 2:
        raise TrendError("An ensemble needs at least two distinct member models.")
    names = [s.name for s in found]
    dataset = found[0].dataset
    eps_list = _eps_list(args.eps, dataset)
    limit = _number("--limit", args.limit, int, minimum=1)
    steps = _number("--steps", args.steps, int, minimum=1, maximum=10_000)
    out = output_folder(args.out)
    zoo = zoo_from(args)
    members = load_models(args, names)  # trains missing spec models (imported ones must be there)
    cache = None if args.no_cache else get_store(args.home)
    with work_bar("robustness card") as progress:
        card = robustness_card(
            names,
            epsilons=eps_list,
            zoo=zoo,
            steps=steps,
            level=args.level,
            limit=limit,
            device=args.device,
            cache=cache,
            progress=progress,
        )
    card.commands = card_commands(card.to_dict(), args.out, limit, home=args.home, device=args.device)
    x, _ = load_dataset(dataset).tensors("test", limit)
    vote = MajorityVote(members, card.seed, card.labels)
    program = export_ensemble(vote, x, out / FILES[0])  # checked by loading it back; nothing kept on a mismatch
    try:
        atomic_write_bytes(out / FILES[1], card_json(card).encode())
        atomic_write_bytes(out / FILES[2], card_html(card).encode())
    except OSError as exc:
        raise TrendError(
            f"The card could not be written in {out} ({exc.strerror}); free space and run again."
        ) from None
    if args.json:
        emit_json(card.to_dict())
    else:
        print(card_summary(card.to_dict()))
    print(f"wrote {program}, {out / FILES[1]} and {out / FILES[2]}", file=sys.stderr)
    return 0


def card_summary(card: dict) -> str:
    """A few lines for the terminal: the vote's clean accuracy, A-GD and the worst case per eps, fired flags."""

    # local: keeps this torch-free module's start-up light
    from trend_core.plots.card import accuracy_text as pct

    lines = [
        (
            f"majority vote of {', '.join(m['label'] for m in card['members'])} on {card['n_images']} "
            f"{card['dataset']} test images (95% intervals)"
        ),
        f"clean: vote {pct(card['vote_clean'])}; "
        + "; ".join(f"{m['label']} {pct(m['clean'])}" for m in card["members"]),
    ]
    for agd, worst in zip(card["agd"], card["audit"]):
        lines.append(f"eps {agd['eps']:g}: A-GD {pct(agd)}, audit worst case {pct(worst)}")
    fired = [f["name"] for f in card["flags"] if f["fired"]]
    lines.append("audit flags fired: " + (", ".join(fired) if fired else "none"))
    return "\n".join(lines)
