"""Transfer runs remembered across server restarts: what the store keeps of a run (its summary, not the per-image
details), an index of the runs finished in each store folder, and the list of finished runs a page offers."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from trend_core.experiments.transfer_result import TransferResult
from trend_core.models.members import dataset_of, home_of
from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import MAX_FINISHED_JOBS, Job, JobManager, JobStatus, ResultStore, get_manager
from trend_core.service import commands
from trend_core.service.submit import belongs_to
from trend_core.storage.store import AnyStore, content_key

TRANSFER_INDEX_VERSION = "transfer-index/v1"
_INDEX_LOCK = threading.Lock()


class CodecStore:
    """A store view that writes ``encode(result)`` and reads back ``decode(value)`` (for results that hold
    closures or tensors the store should not keep, like a TransferResult's per-image details)."""

    def __init__(self, store: ResultStore, encode: Callable[[Any], Any], decode: Callable[[Any], Any]):
        self.store, self.encode, self.decode = store, encode, decode

    def get(self, key: str, default: Any = None) -> Any:
        value = self.store.get(key)
        return default if value is None else self.decode(value)

    def set(self, key: str, value: Any) -> None:
        self.store.set(key, self.encode(value))


def transfer_summary(result: TransferResult) -> dict:
    """What the store keeps of a TransferResult: everything but the per-image details."""
    return {
        "pairs": result.pairs,
        "sources": list(result.sources),
        "targets": list(result.targets),
        "attack": result.attack,
        "eps": result.eps,
        "split": result.split,
        "n_images": int(result.n_images),
        "specs": dict(result.specs),
        "warnings": list(result.warnings),
    }


def transfer_from_summary(summary: dict) -> TransferResult:
    """A TransferResult rebuilt from ``transfer_summary`` (no per-image details: examples need a rerun)."""
    return TransferResult(
        summary["pairs"],
        list(summary["sources"]),
        list(summary["targets"]),
        summary["attack"],
        summary["eps"],
        summary["split"],
        summary["n_images"],
        dict(summary["specs"]),
        list(summary["warnings"]),
    )


def summary_store(store: AnyStore) -> CodecStore:
    """``store`` seen through ``transfer_summary`` / ``transfer_from_summary``."""
    return CodecStore(store, transfer_summary, transfer_from_summary)


def _transfer_index_key(zoo: Zoo) -> str:
    return content_key(TRANSFER_INDEX_VERSION, home_of(zoo))


def record_transfer_run(zoo: Zoo, store: AnyStore, key: str, request: dict) -> None:
    """Note a finished transfer run in the store's index of this folder, so it is listed after a restart."""
    with _INDEX_LOCK:
        entries = [e for e in (store.get(_transfer_index_key(zoo)) or []) if e.get("key") != key]
        entries.append({"key": key, "request": request, "finished": time.time()})
        store.set(_transfer_index_key(zoo), entries[-MAX_FINISHED_JOBS:])


def stored_transfer_runs(zoo: Zoo, store: AnyStore, manager: JobManager | None = None) -> list[Job]:
    """Finished transfer runs of this store folder, newest first, rebuilt from the store when the server
    process no longer knows them (after a restart); runs whose result has left the store are skipped."""
    manager = manager or get_manager()
    codec = summary_store(store)
    found = []
    for entry in reversed(store.get(_transfer_index_key(zoo)) or []):
        job = manager.get(entry["key"], store=codec)
        if job is not None and job.status is JobStatus.DONE:
            job.meta.setdefault("request", entry.get("request", {}))
            job.meta.setdefault("home", home_of(zoo))
            job.meta.setdefault("dataset", dataset_of(job.meta["request"].get("sources", [])))
            if job.meta["request"] and job.meta["dataset"]:
                request = job.meta["request"]
                job.meta.setdefault(
                    "command",
                    commands.transfer_command(
                        request["sources"],
                        request["targets"],
                        request["attack"],
                        request.get("params") or {},
                        job.meta["dataset"],
                        request.get("limit"),
                        request.get("split", "test"),
                        zoo.root,
                    ),
                )
            found.append(job)
    return found


def finished_transfer_runs(zoo: Zoo, store: AnyStore, dataset: str, manager: JobManager | None = None) -> list[Job]:
    """Every finished transfer run of this store folder on ``dataset``, newest first: those this process ran (or
    recalled), then those only the store's index still knows (after a server restart)."""
    manager = manager or get_manager()
    home = home_of(zoo)
    live = [
        job
        for job in manager.jobs(kind="transfer")
        if job.status is JobStatus.DONE and belongs_to(job, home, dataset, strict=True)
    ]
    known = {job.key for job in live}
    return live + [
        job
        for job in stored_transfer_runs(zoo, store, manager)
        if job.key not in known and belongs_to(job, home, dataset)
    ]
