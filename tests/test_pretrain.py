"""The pretrain stage and the splits' isolation: no generator's image before fine-tuning, and a
leave-one-out split never sees the generator it leaves out."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from localize.config import parse_section
from localize.models import ModelParams
from localize.params import PretrainParams, TrainParams
from localize.prepared import Prepared
from localize.saved_model import SavedModel
from stages import pretrain, train

TINY_TRAIN = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "lr": 0.01, "precision": "fp32", "threads": 1,
              "init": "scratch"}
TINY_PRETRAIN = PretrainParams(epochs=1, steps_per_epoch=2, batch_size=8, lr=0.01, real=0.25,
                                        precision="fp32")
MODEL = ModelParams(arch="unet-hp", width=4, dropout=0.1)


@pytest.fixture
def reads(monkeypatch):
    """Every (name, split) whose arrays are opened."""
    seen = []
    original = Prepared.arrays

    def recording(self, name, split):
        seen.append((name, split))
        return original(self, name, split)

    monkeypatch.setattr(Prepared, "arrays", recording)
    return seen


def test_pretraining_reads_real_training_faces_only(prepared, reads):
    saved = pretrain.pretrain(Prepared(prepared), MODEL, TINY_PRETRAIN)
    assert reads and set(reads) == {("real", "train")}
    assert saved.train_generators == [] and saved.split == "pretrain" and len(saved.history) == 1


def test_pretraining_without_real_faces_is_refused(tmp_path):
    from tests.conftest import make_prepared

    root = make_prepared(tmp_path / "p")
    manifest = root / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"real": {"train": 24', '"real": {"train": 0'))
    with pytest.raises(ValueError, match="real training faces"):
        pretrain.pretrain(Prepared(root), MODEL, TINY_PRETRAIN)


def test_a_leave_one_out_split_never_reads_its_held_out_generator(prepared, tmp_path, reads):
    tp = parse_section(TrainParams, {**TINY_TRAIN, "source": "no-alpha", "real": 0.25}, "train")
    train.run(prepared, tmp_path / "models", tmp_path / "live", tmp_path / "c.png", tmp_path / "ck", MODEL, tp)
    assert reads and not [r for r in reads if r[0] == "alpha"]
    assert {name for name, _ in reads} == {"beta", "real"}


def test_fine_tuning_starts_from_the_pretrained_weights(prepared, tmp_path):
    saved = pretrain.pretrain(Prepared(prepared), MODEL, TINY_PRETRAIN)
    saved.save(tmp_path / "pre.pt")
    runs = {}
    for init in ("scratch", "pretrained"):
        tp = parse_section(TrainParams, {**TINY_TRAIN, "source": "alpha", "init": init}, "train")
        out = tmp_path / init
        runs[init] = train.run(prepared, out / "models", out / "live", out / "c.png", out / "ck", MODEL, tp,
                               init_path=tmp_path / "pre.pt")["alpha"]
    a, b = runs["scratch"].state_dict, runs["pretrained"].state_dict
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # Mixing the two: a pretrained file made for another network is refused, naming the file.
    other = dataclasses.replace(MODEL, width=8)
    tp = parse_section(TrainParams, {**TINY_TRAIN, "source": "alpha", "init": "pretrained"}, "train")
    with pytest.raises(ValueError, match="pre.pt: pretrained as .* rerun the pretrain stage"):
        train.run(prepared, tmp_path / "m", tmp_path / "l", tmp_path / "c.png", tmp_path / "k", other, tp,
                  init_path=tmp_path / "pre.pt")


def test_pretrained_file_is_a_saved_model(prepared, tmp_path):
    pretrain.pretrain(Prepared(prepared), MODEL, dataclasses.replace(TINY_PRETRAIN, epochs=0)).save(tmp_path / "p.pt")
    loaded = SavedModel.load(tmp_path / "p.pt")
    assert loaded.model == dataclasses.asdict(MODEL) and loaded.history == []


def test_the_pretrained_file_has_the_same_bytes_whatever_its_temporary_name(prepared, tmp_path):
    """The stage writes through a random temporary name (localize.atomic): the file's bytes must not
    carry it, or every rebuild of pretrain would rerun all the fine-tunes downstream."""
    saved = pretrain.pretrain(Prepared(prepared), MODEL, dataclasses.replace(TINY_PRETRAIN, epochs=0))
    saved.save(tmp_path / ".tmp-one-pretrained.pt")
    saved.save(tmp_path / "pretrained.pt")
    assert (tmp_path / ".tmp-one-pretrained.pt").read_bytes() == (tmp_path / "pretrained.pt").read_bytes()
