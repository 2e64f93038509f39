"""A defender's own evaluation data: `trend data import NAME PATH` from an image folder or an .npz, checked with
one sentence per fault, then usable by name wherever a dataset is (here: load_dataset and a transfer run)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import trend_core as tl
from trend_core.config.datasets import get_info, list_datasets
from trend_core.data.datasets import load_dataset
from trend_core.data.user import import_dataset
from trend_core.errors import TrendError


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("TREND_DATA", str(root))
    return root


def colour_npz(path, n=40, classes=4, size=6):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)  # N x H x W x C, as cameras give them
    y = np.arange(n) % classes
    np.savez(path, x=x, y=y, classes=np.array([f"c{i}" for i in range(classes)]))
    return x, y


def test_an_npz_becomes_a_dataset_every_command_knows(data_root, tmp_path):
    x, y = colour_npz(tmp_path / "cams.npz")
    info = import_dataset("cams", tmp_path / "cams.npz")
    assert (info.num_classes, info.input_shape, info.class_names[:2]) == (4, (3, 6, 6), ("c0", "c1"))
    assert "cams" in list_datasets() and get_info("cams") == info
    bundle = load_dataset("cams")
    images, labels = bundle.tensors("test")
    assert images.shape == (40, 3, 6, 6) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert torch.equal(images, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(labels, torch.from_numpy(y))
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Flatten(), nn.Linear(108, 4)).eval() for _ in range(2)]
    result = tl.run_transfer(models, tl.PGD(eps=0.1, steps=3), data=bundle, cache=None, device="cpu")
    assert len(result.pairs) == 4 and result.pairs["generated"].sum() > 0  # attacked on the imported images


def test_an_image_folder_becomes_a_dataset(data_root, tmp_path):
    folder = tmp_path / "folder"
    for label, name in enumerate(["cat", "dog"]):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((5, 7), 40 * i + label, dtype=np.uint8)).save(folder / name / f"{i}.png")
    info = import_dataset("pets", folder, eps=0.05)
    assert (info.num_classes, info.input_shape, info.class_names, info.default_eps) == (
        2,
        (1, 5, 7),
        ("cat", "dog"),
        0.05,
    )
    images, labels = load_dataset("pets").tensors("test")
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and images[4].max() == pytest.approx((40 + 1) / 255)


@pytest.mark.parametrize(
    "arrays, sentence",
    [
        (dict(x=np.zeros((4, 6, 6)), y=np.array([0, 1, 0])), "has 4 images but 3 labels"),
        (dict(x=np.zeros((4, 6, 6)), y=np.zeros(4)), "at least two classes"),
        (dict(x=np.zeros((4, 6, 6)), y=np.array([0, 2, 0, 2])), "no image has label 1"),
        (dict(x=np.full((4, 6, 6), 200.0), y=np.array([0, 1, 0, 1])), r"divide by 255"),
        (dict(x=np.zeros((4, 6, 6, 5)), y=np.array([0, 1, 0, 1])), "C = 1 or 3"),
        (dict(images=np.zeros((4, 6, 6)), y=np.array([0, 1, 0, 1])), "needs arrays named x"),
        (dict(x=np.full((4, 6, 6), np.nan), y=np.array([0, 1, 0, 1])), "NaN"),
    ],
)
def test_bad_npz_files_get_one_sentence(data_root, tmp_path, arrays, sentence):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TrendError, match=sentence):
        import_dataset("bad", tmp_path / "bad.npz")
    assert "bad" not in list_datasets()  # nothing half-written


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_pickle_inside_an_npz_is_refused(data_root, tmp_path):
    np.savez(tmp_path / "evil.npz", x=np.array([Evil()], dtype=object), y=np.array([0]))
    with pytest.raises(TrendError, match="Python objects"):
        import_dataset("evil", tmp_path / "evil.npz")
    assert pickle  # (the object array above is a pickle inside the zip)


def test_names_paths_and_mixed_folders_are_checked(data_root, tmp_path):
    colour_npz(tmp_path / "ok.npz")
    with pytest.raises(TrendError, match="built-in dataset"):
        import_dataset("mnist", tmp_path / "ok.npz")
    with pytest.raises(TrendError, match="lowercase letters"):
        import_dataset("My Data", tmp_path / "ok.npz")
    with pytest.raises(TrendError, match="No such file or folder"):
        import_dataset("ghost", tmp_path / "missing.npz")
    import_dataset("twice", tmp_path / "ok.npz")
    with pytest.raises(TrendError, match="already imported"):
        import_dataset("twice", tmp_path / "ok.npz")
    folder = tmp_path / "mixed"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(folder / "a" / "0.png")
    Image.fromarray(np.zeros((6, 5), dtype=np.uint8)).save(folder / "b" / "0.png")
    with pytest.raises(TrendError, match="resize every image to one size"):
        import_dataset("mixed", folder)


def test_the_cli_imports_and_lists(data_root, tmp_path):
    colour_npz(tmp_path / "cams.npz")
    run = [sys.executable, "-m", "trend_core"]
    ok = subprocess.run([*run, "data", "import", "cams", str(tmp_path / "cams.npz")], capture_output=True, text=True)
    assert ok.returncode == 0 and "4 classes, 3x6x6 images" in ok.stdout
    listed = subprocess.run([*run, "data", "list"], capture_output=True, text=True)
    assert "cams" in listed.stdout and "imported" in listed.stdout
    bad = subprocess.run(
        [*run, "data", "import", "cams2", str(tmp_path / "nothing.npz")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "No such file or folder" in bad.stderr and "Traceback" not in bad.stderr
