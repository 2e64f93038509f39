"""Datasets: the embedded digits split, CIFAR from fake files in the real on-disk format, ImageNet folders."""

import os
import pickle

import numpy as np
import pytest
import torch

from trend_core.config.datasets import get_info
from trend_core.data.datasets import load_cifar, load_dataset, load_imagenet
from trend_core.errors import TrendError


def test_digits_split_is_fixed_stratified_and_in_unit_range():
    a, b = load_dataset("digits"), load_dataset("digits")
    sizes = (len(a.train), len(a.val), len(a.test))
    assert sum(sizes) == 1797
    assert abs(len(a.test) - 0.2 * 1797) <= 5  # 20% test, rounded per class
    assert abs(len(a.val) / (len(a.train) + len(a.val)) - 0.1) < 0.01
    xa, ya = a.tensors("test")
    xb, yb = b.tensors("test")
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.shape == (len(a.test), 1, 8, 8) and 0 <= xa.min() and xa.max() <= 1
    counts = torch.bincount(ya, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified: every class about 36 times
    x5, _ = a.tensors("test", limit=5)
    assert torch.equal(x5, xa[:5])


def test_dataset_infos():
    digits = get_info("digits")
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    assert 0 < digits.default_eps < 0.5
    assert get_info("cifar10").default_eps == pytest.approx(8 / 255)
    assert get_info("cifar100").num_classes == 100
    with pytest.raises(TrendError, match="choose one of"):
        get_info("svhn")


def write_fake_cifar10(root, per_batch=20, test=15, learnable=False):
    """Files in the real CIFAR-10 python format: pickled dicts of bytes keys, uint8 rows, label lists.
    ``learnable``: each class has its own mean colour (plus noise), so a model trained briefly on them predicts
    more than one class; otherwise the pixels are uniform noise."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colours = np.random.default_rng(1).integers(40, 216, (10, 3))  # one mean colour per class
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        labels = rng.integers(0, 10, count)
        if learnable:
            noise = rng.integers(-40, 41, (count, 3, 1024))
            pixels = np.clip(colours[labels][:, :, None] + noise, 0, 255).astype(np.uint8).reshape(count, 3072)
        else:
            pixels = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels.tolist(),
            b"data": pixels,
            b"filenames": [f"{i}.png".encode() for i in range(count)],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    meta = {
        b"label_names": [
            c.encode()
            for c in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        ]
    }
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return folder


def test_cifar10_loads_from_files_in_the_real_format(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    bundle = load_cifar("cifar10", tmp_path)
    assert len(bundle.train) + len(bundle.val) == 100 and len(bundle.val) == 10 and len(bundle.test) == 15
    x, y = bundle.tensors("test")
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    with open(folder / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    expected = torch.from_numpy(raw[b"data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(x, expected) and y.tolist() == raw[b"labels"]
    assert bundle.info.class_names[0] == "airplane"
    image, label = bundle.train[0]
    assert image.shape == (3, 32, 32) and image.max() <= 1 and isinstance(int(label), int)


def test_cifar100_loads_from_files_in_the_real_format(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, count in (("train", 50), ("test", 10)):
        batch = {
            b"fine_labels": rng.integers(0, 100, count).tolist(),
            b"coarse_labels": [0] * count,
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, handle)
    bundle = load_cifar("cifar100", tmp_path)
    assert len(bundle.test) == 10 and bundle.info.num_classes == 100 and bundle.info.class_names[5] == "c5"


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(TrendError) as info:
        load_cifar("cifar10", tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "trend data download cifar10" in str(info.value)


def test_trend_data_environment_variable_is_the_default_root(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path)
    monkeypatch.setenv("TREND_DATA", str(tmp_path))
    assert len(load_cifar("cifar10").test) == 15


def test_a_hostile_dataset_file_is_refused_without_running_it(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    with pytest.raises(TrendError, match="not a readable CIFAR batch"):
        load_cifar("cifar10", tmp_path)
    assert not marker.exists()


def test_imagenet_folder_layout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            (tmp_path / "imagenet" / split / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imagenet" / split / cls / f"{i}.JPEG")
    bundle = load_imagenet(tmp_path)
    assert bundle.info.num_classes == 2 and bundle.info.class_names == ("n01", "n02")
    x, _ = bundle.tensors("test", limit=4)
    assert x.shape == (4, 3, 224, 224) and 0 <= x.min() and x.max() <= 1
    with pytest.raises(TrendError, match="ImageFolder"):
        load_imagenet(tmp_path / "empty")
