"""Names of networks a defender imported (``user/<dataset>/<name>``), told apart from ModelSpec names.

A ModelSpec name (``digits/resnet18-w0.25/Q2/sgd/s0``) says how this project builds and trains a model; an
imported network is defined outside the project (a ``torch.export`` program), so its name only says which
dataset it classifies and what the defender calls it. Torch-free, so the CLI can parse names before torch loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trend_core.config.datasets import get_info
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError

USER_PREFIX = "user"
_SLUG = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_DATASET = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
EXAMPLE = "user/digits/my-net"
PROGRAM_SUFFIX = ".pt2"  # a torch.export program (the file an imported network comes in)


@dataclass(frozen=True)
class UserModelName:
    """An imported network's name: the dataset it classifies and the defender's short name for it."""

    dataset: str
    slug: str

    @property
    def name(self) -> str:
        """The canonical name, ``user/<dataset>/<slug>`` (what commands and the zoo take)."""
        return f"{USER_PREFIX}/{self.dataset}/{self.slug}"

    @property
    def short_name(self) -> str:
        """The label tables and charts show: the defender's own name for the network."""
        return self.slug

    @property
    def key(self) -> str:
        """A file-name-safe identity (slugs and dataset names hold no '/')."""
        return f"{USER_PREFIX}-{self.dataset}-{self.slug}"

    def __str__(self) -> str:
        return self.name


def is_user_model_name(name: object) -> bool:
    """Whether ``name`` names an imported network (``user/<dataset>/<name>``) rather than a ModelSpec."""
    if isinstance(name, UserModelName):
        return True
    return isinstance(name, str) and name.strip().startswith(USER_PREFIX + "/") and name.strip().count("/") == 2


def parse_user_model(name: str | UserModelName, known_dataset: bool = True) -> UserModelName:
    """``user/<dataset>/<name>`` parsed; a TrendError in one sentence when it is malformed or (``known_dataset``)
    when its dataset is neither built in nor imported."""
    if isinstance(name, UserModelName):
        parsed = name
    else:
        parts = str(name).strip().split("/")
        if len(parts) != 3 or parts[0] != USER_PREFIX:
            raise TrendError(f"An imported network's name is user/<dataset>/<name>, like {EXAMPLE}; got {name!r}.")
        parsed = UserModelName(parts[1], parts[2])
    if not _DATASET.match(parsed.dataset):
        raise TrendError(f"{parsed.dataset!r} in {parsed.name!r} is not a dataset name (lowercase, like digits).")
    if not _SLUG.match(parsed.slug):
        raise TrendError(
            f"The name {parsed.slug!r} in {parsed.name!r} must be 1-40 lowercase letters, digits, '-' or '_', "
            "starting with a letter."
        )
    if known_dataset:
        get_info(parsed.dataset)  # an unknown dataset: one sentence listing the known ones
    return parsed


def parse_model_name(name: str | ModelSpec | UserModelName) -> ModelSpec | UserModelName:
    """A ModelSpec for a spec name, a UserModelName for ``user/<dataset>/<name>``."""
    if isinstance(name, (ModelSpec, UserModelName)):
        return name
    if is_user_model_name(name):
        return parse_user_model(name)
    return ModelSpec.parse(name)
