"""Transfer runs of zoo models as jobs: the matrix a page shows, summarized into the store (``history``)."""

from __future__ import annotations

from typing import cast

from trend_core.attacks.registry import attack_parameters, make_attack
from trend_core.attacks.settings import attack_settings
from trend_core.config.profiles import check_profile
from trend_core.errors import TrendError
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_keys import attack_identity
from trend_core.models.members import check_members, home_of, load_members, model_dataset, model_identity, zoo_labels
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service import commands
from trend_core.service.history import record_transfer_run, summary_store
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore, Cache, content_key

TRANSFER_JOB_VERSION = "transfer-job/v1"


def submit_transfer(
    zoo: Zoo,
    store: AnyStore,
    sources: list[str],
    targets: list[str],
    attack: str,
    params: dict | None = None,
    limit: int | None = None,
    split: str = "test",
    device: str = "auto",
    live: bool = False,
    manager: JobManager | None = None,
    profile: str = "paper",
) -> Job:
    """A transfer run of zoo models (by canonical name) as a heavy job; the attack is checked first.

    The finished TransferResult is summarized into ``store``, so a new session gets the matrix at once;
    ``live=True`` asks for a result with per-image details (examples), recomputed from the cached attacks.
    ``params`` are completed by ``attack_settings`` (the CLI's defaults; PGD's step size from eps and steps).
    """
    if not sources:
        raise TrendError("Pick at least one source model to attack.")
    if not targets:
        raise TrendError("Pick at least one target model to evaluate.")
    names = check_members(zoo, [*sources, *targets])
    dataset = model_dataset(names[0])
    params = attack_settings(attack, dataset).complete(**(params or {}))
    profile = check_profile(profile)
    extra = {"profile": profile} if profile != "paper" and "profile" in attack_parameters(attack) else {}
    attack_obj = make_attack(attack, **params, **extra)
    dev = resolve_device(device)
    labels = zoo_labels(zoo, names)  # the run's tables say what the pickers say
    key = content_key(
        TRANSFER_JOB_VERSION,
        home_of(zoo),
        model_identity(zoo, names),
        [labels[n] for n in names],
        list(sources),
        list(targets),
        attack_identity(attack_obj),
        attack_obj.eps,
        limit,
        split,
        *([] if profile == "paper" else [profile]),
    )
    request = dict(
        sources=list(sources),
        targets=list(targets),
        attack=attack,
        params=dict(params),
        limit=limit,
        split=split,
        profile=profile,
    )

    def run(job: Job):
        models = load_members(zoo, names, dev, job)

        result = run_transfer(
            models,
            attack_obj,
            split=split,
            limit=limit,
            cache=cast(Cache, store),
            progress=job.progress,
            device=dev,
            sources=list(sources),
            targets=list(targets),
            cancel=job.cancel_requested,
            profile=profile,
        )
        if not live:
            record_transfer_run(zoo, store, key, request)
        return result

    n = len(sources)
    return submit_job(
        zoo,
        [],
        run,
        key=key + (":live" if live else ""),
        title=f"{attack_obj.name.upper()} transfer run ({n} source{'s' if n > 1 else ''} x {len(targets)} targets)",
        kind="transfer-live" if live else "transfer",
        device=dev,
        store=None if live else summary_store(store),
        command=commands.transfer_command(
            sources, targets, attack, params, dataset, limit, split, zoo.root, device, profile
        ),
        manager=manager,
        models=sources,
        meta={"request": request},
    )
