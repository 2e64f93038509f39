"""What names a transfer run's cached results and reports its progress: the store keys of an attack's output,
the attack's identity, the progress report per source and the cancellation signal.

Kept apart from ``transfer.py`` so that the units of work that fill the store elsewhere (``scale.py``, on a
Ray cluster) write under the same keys without importing the transfer run itself.
"""

from __future__ import annotations

from typing import Sequence

from trend_core.attacks.base import Attack
from trend_core.runtime.progress import Progress
from trend_core.storage.store import content_key

CACHE_VERSION = "transfer/v2"  # v2: CPU attacks iterate on channels-last twins (last bits moved)


class TransferCancelled(Exception):
    """Raised when the cancel callback returns True; sources finished so far stay in the store."""


def report_source(progress: Progress | None, done: int, total: int, source: str, from_cache: bool) -> None:
    """Tell ``progress`` that ``done`` of ``total`` sources are finished, the last one ``source`` (read from the
    cache or attacked), so the local loop and the distributed units say it in the same words."""
    if progress is not None:
        origin = " (cached)" if from_cache else ""
        progress(done / total, f"attacked {source}{origin} ({done}/{total} sources)")


def attack_keys(attack: Attack, epsilons: Sequence[float | None], data_key: str, fingerprint: str) -> list[str]:
    """Store keys of one model's attack results: the weights, the attack's class and parameters, eps, the images."""
    identity = attack_identity(attack)
    return [content_key(CACHE_VERSION, "attack", fingerprint, identity, eps, data_key) for eps in epsilons]


def attack_identity(attack: Attack) -> dict:
    """What makes an attack's output: its class and parameters (eps is keyed separately)."""
    params = {k: v for k, v in attack.params().items() if k != "eps"}
    return {"class": f"{type(attack).__module__}.{type(attack).__qualname__}", "name": attack.name, "params": params}
