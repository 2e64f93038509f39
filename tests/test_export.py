"""Networks in and out as torch.export programs: an ensemble exported as one file votes exactly as the engine's
MajorityVote when loaded by plain torch in a fresh process, and archives whose loading would unpickle code are
refused with one sentence before torch reads them."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import FP, HT, Q1, Q2

from trend_core.ensemble.export import export_ensemble
from trend_core.errors import TrendError
from trend_core.models.exported import check_program_archive, load_program, save_program
from trend_core.nn.vote import MajorityVote, drawn_ties

MARKER_ENV = "TREND_TEST_MARKER"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, zoo_model):
    folder = tmp_path_factory.mktemp("export")
    vote = MajorityVote([zoo_model(n) for n in (FP, Q1, Q2, HT)], seed=3)  # quantized and halftoned inputs too
    # noise images: the trained members disagree on them, so the seeded tie-break decides many
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    path = export_ensemble(vote, images, folder / "ensemble.pt2")
    return vote, images, path


def test_the_exported_ensemble_votes_bit_identically_in_plain_torch(exported, tmp_path):
    vote, images, path = exported
    with torch.no_grad():
        preds = vote.votes(images)
        expected = vote.decide(preds, images)
    counts = torch.nn.functional.one_hot(preds, 10).sum(0)
    assert int(drawn_ties(counts, vote.ties).sum()) >= 5  # the comparison covers the seeded tie-break
    torch.save(images, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "program = torch.export.load(sys.argv[1]).module()\n"
        "x = torch.load(sys.argv[2])\n"
        "print(program(x).argmax(dim=1).tolist())\n"
        "print(program(x[:5]).argmax(dim=1).tolist())\n"  # any batch size
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    whole, first = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert whole == expected.tolist() and first == expected[:5].tolist()


def test_the_project_loader_reads_it_back(exported):
    vote, images, path = exported
    with torch.no_grad():
        assert torch.equal(load_program(path)(images).argmax(1), vote.decide(vote.votes(images), images))


def _rewrite(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = change(item.filename, old.read(item.filename))
            if data is not None:
                new.writestr(item, data)
    return target


class Evil:
    def __reduce__(self):
        return (exec, (f"open(__import__('os').environ['{MARKER_ENV}'], 'w').write('ran')",))


def _marker(tmp_path, monkeypatch) -> Path:
    marker = tmp_path / "code-ran"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    return marker


def test_a_pickled_weight_is_refused_before_torch_reads_it(exported, tmp_path, monkeypatch):
    marker = _marker(tmp_path, monkeypatch)

    def pickle_first_weight(name: str, data: bytes):
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("/weight_0"):
            return pickle.dumps(Evil())
        return data

    hostile = _rewrite(exported[2], tmp_path / "hostile.pt2", pickle_first_weight)
    with pytest.raises(TrendError, match="pickled object, which could run code"):
        load_program(hostile)
    assert not marker.exists()


def test_pickled_example_inputs_are_refused(exported, tmp_path, monkeypatch):
    marker = _marker(tmp_path, monkeypatch)
    buffer = io.BytesIO()
    torch.save(Evil(), buffer)  # needs weights_only=False, which torch's loader would fall back to
    hostile = _rewrite(
        exported[2],
        tmp_path / "hostile.pt2",
        lambda name, data: buffer.getvalue() if name.endswith("sample_inputs/model.pt") else data,
    )
    with pytest.raises(TrendError, match="example inputs are a pickle"):
        load_program(hostile)
    assert not marker.exists()


def test_other_files_get_one_sentence(tmp_path):
    state_dict = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state_dict)
    with pytest.raises(TrendError, match="not a torch.export program of the current format"):
        check_program_archive(state_dict)  # torch.save files are zips too, without the export format
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(TrendError, match=r"is not a torch.export program \(.pt2\)"):
        check_program_archive(junk)
    with pytest.raises(TrendError, match="No model file"):
        check_program_archive(tmp_path / "missing.pt2")


def test_a_plain_network_round_trips(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x = torch.rand(7, 1, 8, 8)
    path = save_program(net, x[:2], tmp_path / "net.pt2")
    with torch.no_grad():
        assert torch.equal(load_program(path)(x), net(x))
