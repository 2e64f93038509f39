"""Exporting a chosen ensemble from the dashboard, as a job: the vote as one .pt2 file with its robustness card,
written to ``<store folder>/exports/<job key>/`` (what `trend ensemble export --out` writes), so the page offers
the three files for download."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trend_core.data.datasets import load_dataset
from trend_core.ensemble.export import export_ensemble
from trend_core.experiments.audit import check_level
from trend_core.experiments.robustness_card import AGD_STEPS, robustness_card
from trend_core.models.checkpoints import atomic_write_bytes
from trend_core.models.members import check_members, home_of, load_members, model_dataset, model_identity
from trend_core.models.zoo import Zoo
from trend_core.nn.vote import MajorityVote
from trend_core.plots.card import card_html, card_json
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service.checks import check_epsilons, check_limit
from trend_core.service.commands import card_commands, export_command
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore, content_key

EXPORT_VERSION = "export/v1"
FILES = {"program": "ensemble.pt2", "json": "card.json", "html": "card.html"}


def submit_export(
    zoo: Zoo,
    store: AnyStore,
    members: Sequence[str],
    epsilons: Sequence[float],
    limit: int | None = 100,
    steps: int = AGD_STEPS,
    level: str = "quick",
    device: str = "auto",
    manager: JobManager | None = None,
) -> Job:
    """The robustness card of the vote of ``members`` (zoo names, imported ``user/...`` ones too) and the vote as a
    checked .pt2 program. Result: ``card`` (``RobustnessCard.to_dict()``, with the commands that reproduce it)
    and ``files`` (kind -> path of ensemble.pt2, card.json, card.html in the job's export folder)."""
    names = check_members(zoo, members, 2, "ensemble member")
    eps_list = check_epsilons(epsilons)
    limit = check_limit(limit)
    check_level(level)
    dev = resolve_device(device)
    identity = [EXPORT_VERSION, model_identity(zoo, names), eps_list, limit, int(steps), level]
    key = content_key("analysis-jobs/v1", "ensemble-export", home_of(zoo), *identity)
    folder = Path(zoo.root) / "exports" / key[:16]

    def run(job: Job) -> dict:
        zoo.check_writable()
        loaded = load_members(zoo, names, dev, job)
        card = robustness_card(
            names,
            epsilons=eps_list,
            zoo=zoo,
            steps=int(steps),
            level=level,
            limit=limit,
            device=dev,
            cache=store,
            progress=job.progress,
        )
        card.commands = card_commands(card.to_dict(), folder, limit, home=zoo.root, device=device)
        x, _ = load_dataset(model_dataset(names[0])).tensors("test", limit)
        folder.mkdir(parents=True, exist_ok=True)
        export_ensemble(MajorityVote(loaded, card.seed, card.labels), x, folder / FILES["program"])
        atomic_write_bytes(folder / FILES["json"], card_json(card).encode())
        atomic_write_bytes(folder / FILES["html"], card_html(card).encode())
        return {"card": card.to_dict(), "files": {kind: str(folder / name) for kind, name in FILES.items()}}

    return submit_job(
        zoo,
        identity,
        run,
        title=f"Export of the vote of {len(names)} models with its robustness card",
        kind="ensemble-export",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"members": names},
        key=key,
        command=export_command(names, eps_list, "trend-export", limit, int(steps), level, home=zoo.root, device=device),
    )


def exported_files(result: dict) -> dict[str, bytes] | None:
    """The bytes of an export job's three files (for download buttons); None when any is gone from disk."""
    try:
        return {kind: Path(path).read_bytes() for kind, path in result["files"].items()}
    except (OSError, KeyError, TypeError):
        return None
