"""SimIR distillation (stage 1): the teacher gets no gradient, levels are matched in order, the
feature loss falls when trained with the engine, and the output-level term needs a teacher."""

from __future__ import annotations

import pytest
import torch

from irlib import data
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import fit
from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.models import create_model
from irlib.simir.distill import DistillObjective, FeatureDistiller, teacher_level_map, unlabelled_images
from irlib.vfm import create_encoder

NORM = Normalize(0.4, 0.2)
SMALL = dict(arch="repvit_m0_9", dim=32, ffn_dim=64, decoder_mlp_dim=64, dense_ffn_dim=32)


def _distiller() -> FeatureDistiller:
    torch.manual_seed(0)
    return FeatureDistiller(create_model("simir_tiny", **SMALL), create_encoder("tiny_cnn_random", seed=0))


def test_teacher_level_map() -> None:
    assert teacher_level_map(4, 4) == [0, 1, 2, 3]
    assert teacher_level_map(4, 1) == [0, 0, 0, 0]
    assert teacher_level_map(4, 2) == [0, 0, 1, 1]
    with pytest.raises(IrlibInputError):
        teacher_level_map(4, 0)


def test_teacher_gets_no_gradient_and_adapters_and_student_do() -> None:
    model = _distiller()
    loss, logs = DistillObjective(NORM)(model, {"image": torch.rand(2, 1, 64, 48), "mask": None})
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    assert all(a.weight.grad is not None and a.weight.grad.abs().sum() > 0 for a in model.adapters)
    assert model.student.encoder.proj[0][0].weight.grad.abs().sum() > 0
    assert set(logs) >= {"feat", "feat0", "feat3", "loss"}
    assert model.export_student() is model.student


def test_output_distillation_needs_a_teacher_and_adds_a_term() -> None:
    with pytest.raises(IrlibInputError, match="output_teacher"):
        DistillObjective(NORM, output_weight=1.0)
    model = _distiller()
    teacher = lambda raw, x: torch.zeros_like(raw)     # noqa: E731  (p = 0.5 everywhere)
    batch = {"image": torch.rand(2, 1, 32, 32), "mask": None}
    plain, _ = DistillObjective(NORM)(model, batch)
    both, logs = DistillObjective(NORM, teacher, output_weight=2.0)(model, batch)
    assert torch.isclose(both, plain + 2.0 * torch.tensor(logs["kd"]), atol=1e-5)


def test_stage_one_with_the_engine_lowers_the_feature_loss() -> None:
    base = data.SyntheticSirst(8, size=64, seed=0)
    ds = SirstTorchDataset(base, train=True, crop_size=64, seed=0)
    model = _distiller()
    hist = fit(model, ds, epochs=6, normalize=NORM, objective=DistillObjective(NORM), batch_size=4, lr=3e-3,
               progress=False)
    assert hist.losses[-1] < 0.8 * hist.losses[0]


def test_unlabelled_images_refuse_repeated_names() -> None:
    a = data.SyntheticSirst(2, size=64, seed=0)
    assert len(unlabelled_images(a)) == 2
    with pytest.raises(IrlibInputError, match="repeated"):
        unlabelled_images(a, a)
