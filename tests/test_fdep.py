"""FDEP: SAMF keeps shapes, CO-ISD trains both branches, the export is the unchanged host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import irlib

from irlib.engine import Normalize
from irlib.fdep import SAMF, CoISD, CoISDObjective
from irlib.fdep.coisd import choose_vfm_layers
from irlib.models import count_flops, count_params, create_model, list_models, save_host
from irlib.vfm import create_encoder

SIZE = 64


def _coisd(host_name: str, seed: int = 0, **kwargs) -> CoISD:
    torch.manual_seed(seed)
    host = create_model(host_name)
    encoder = create_encoder("tiny_cnn_random", seed=seed)
    return CoISD(host, encoder, **kwargs)


def _batch(seed: int = 0, size: int = SIZE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(2, 1, size, size, generator=g)
    mask = (torch.rand(2, 1, size, size, generator=g) > 0.97).float()
    return {"image": raw, "mask": mask}


def _first(out):
    return out[0] if isinstance(out, list) else out


def test_samf_keeps_shape_and_rejects_odd_channels() -> None:
    samf = SAMF(channels=16, vfm_channels=24)
    x, d = torch.randn(2, 16, 8, 10), torch.randn(2, 24, 5, 7)
    assert samf(x, d).shape == x.shape
    with pytest.raises(ValueError, match="even"):
        SAMF(channels=15, vfm_channels=8)


@pytest.mark.parametrize("gate", ["none", "sigmoid", "tanh"])
def test_samf_gates(gate: str) -> None:
    samf = SAMF(channels=8, vfm_channels=4, gate=gate)
    assert samf(torch.randn(1, 8, 4, 4), torch.randn(1, 4, 2, 2)).shape == (1, 8, 4, 4)


@pytest.mark.parametrize("host_name", list_models())
def test_both_branches_keep_shapes_for_every_host(host_name: str) -> None:
    model = _coisd(host_name)
    batch = _batch(size=72)  # not a multiple of 32
    main, light = model.forward_branches(batch["image"], batch["image"])
    for out in (main, light):
        out = out if isinstance(out, list) else [out]
        assert all(o.shape == batch["image"].shape for o in out)
    assert len(model.samf.blocks) == 4


def test_main_branch_differs_from_light_branch() -> None:
    model = _coisd("acm")
    batch = _batch()
    main, light = model.forward_branches(batch["image"], batch["image"])
    assert not torch.allclose(_first(main), _first(light))


def test_gradients_reach_shared_encoder_from_both_losses_and_vfm_gets_none() -> None:
    model = _coisd("acm")
    objective = CoISDObjective("softiou", lam=1.0, normalize=Normalize(0.5, 0.25))
    batch = _batch()
    main, light = model.forward_branches(batch["image"], objective.normalize(batch["image"]))
    host_params = [p for p in model.host.parameters()]
    samf_params = list(model.samf.parameters())
    g_main = torch.autograd.grad(objective.loss_fn(main, batch["mask"]), host_params + samf_params,
                                 retain_graph=True, allow_unused=True)
    g_light = torch.autograd.grad(objective.loss_fn(light, batch["mask"]), host_params + samf_params,
                                  allow_unused=True)
    first_conv = next(i for i, p in enumerate(host_params) if p.dim() == 4)  # the stem: encoder side
    for grads in (g_main, g_light):
        assert grads[first_conv] is not None and grads[first_conv].abs().sum() > 0
    n_host = len(host_params)
    assert all(g is not None for g in g_main[n_host:]), "main loss must train SAMF"
    assert all(g is None for g in g_light[n_host:]), "light loss must not touch SAMF"
    assert all(not p.requires_grad for p in model.encoder.parameters())

    loss, logs = objective(model, batch)
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert logs["loss"] == pytest.approx(logs["main"] + logs["light"], rel=1e-6)


def test_light_branch_owns_batchnorm_running_statistics() -> None:
    model = _coisd("acm")
    reference = create_model("acm")
    reference.load_state_dict(model.host.state_dict())
    batch = _batch()
    model.train(), reference.train()
    model.forward_branches(batch["image"], batch["image"])
    reference(batch["image"])
    for (name, a), b in zip(model.host.named_buffers(), reference.buffers()):
        assert torch.equal(a, b), name


def _train_steps(model: CoISD, steps: int = 3) -> None:
    objective = CoISDObjective("softiou", lam=0.5, normalize=Normalize(0.5, 0.25))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(steps):
        loss, _ = objective(model, _batch(seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()


# Runs in a fresh interpreter: loads the saved host with irlib.models alone and writes its output.
_LOAD_AND_RUN = """
import sys
import torch
torch.set_num_threads(1)
from irlib.models import load_host
host = load_host(sys.argv[1]).eval()
with torch.no_grad():
    torch.save(host(torch.load(sys.argv[2])), sys.argv[3])
loaded = sorted(m for m in sys.modules if m.startswith(("irlib.fdep", "irlib.vfm")))
assert not loaded, f"loading the exported host imported {loaded}"
"""


@pytest.mark.parametrize("host_name", ["acm", "alcnet"])
def test_export_is_the_unchanged_host(host_name: str, tmp_path) -> None:
    model = _coisd(host_name)
    _train_steps(model)
    exported = model.export_host()
    plain = create_model(host_name)
    assert count_params(exported) == count_params(plain)
    assert count_flops(exported, (1, 1, 256, 256)) == count_flops(plain, (1, 1, 256, 256))
    assert set(exported.state_dict()) == set(plain.state_dict())
    assert not exported.training
    own = {p.data_ptr() for p in model.parameters()}
    assert not own & {p.data_ptr() for p in exported.parameters()}, "the export must be a copy"

    batch = _batch(seed=9)
    x = Normalize(0.5, 0.25)(batch["image"])
    model.eval()
    with torch.no_grad():  # both branches as CO-ISD computes them in training
        main, light = model.forward_branches(batch["image"], x)
    assert not torch.equal(_first(main), _first(light)), "SAMF must change the main branch"

    save_host(exported, tmp_path / "host.pth", name=host_name)
    torch.save(x, tmp_path / "x.pt")
    repo = Path(irlib.__file__).resolve().parent.parent  # the irlib under test, also in a worktree
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(tmp_path / "host.pth"), str(tmp_path / "x.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=repo, env=env, timeout=300)
    deployed = torch.load(tmp_path / "out.pt")
    assert type(deployed) is type(light)
    for a, b in zip(deployed if isinstance(deployed, list) else [deployed],
                    light if isinstance(light, list) else [light]):
        assert torch.equal(a, b), "the reloaded host must reproduce the light branch bit for bit"


def test_vfm_layers_are_all_maps_or_an_explicit_choice() -> None:
    from irlib.errors import IrlibInputError

    enc = create_encoder("tiny_cnn_random", seed=0)
    n = len(enc.feature_names)
    assert n >= 3 and choose_vfm_layers(enc, n) == list(range(n))
    assert choose_vfm_layers(enc, 2, [1, n - 1]) == [1, n - 1]
    with pytest.raises(IrlibInputError, match=f"gives {n} feature maps"):
        choose_vfm_layers(enc, n - 1)           # no silent evenly spaced subset
    with pytest.raises(IrlibInputError, match="must name 2"):
        choose_vfm_layers(enc, 2, [0, 7])
