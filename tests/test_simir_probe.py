"""irlib.simir.probe / probing: SimIR's probing model (SAM's mask decoder on any irlib encoder),
the encoder's fine-tuning switch, and the study runner on a tiny synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom

from irlib.engine import Normalize, trainable_state
from irlib.errors import IrlibInputError
from irlib.simir import probing as px
from irlib.simir.probe import ProbeObjective, ProbeSegmenter
from irlib.vfm import create_encoder

TINY_SAM = dict(weights="random", embed_dim=32, depth=2, num_heads=2, resize=64)
NORM = Normalize(0.3, 0.15)


def tiny(name: str) -> torch.nn.Module:
    """Small encoders: a random CNN (pad policy), a random ViT, a SAM ViT that resizes to 64."""
    return create_encoder("sam_vit_b", **TINY_SAM) if name == "sam" else create_encoder(name)


def probe(name: str, mode: str, seed: int = 0) -> ProbeSegmenter:
    torch.manual_seed(seed)
    return ProbeSegmenter(tiny(name), mode, normalize=NORM, depth=1, mlp_dim=64)


# ------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("name", ["tiny_cnn_random", "tiny_vit_random", "sam"])
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_logits_have_the_input_size(name: str, mode: str) -> None:
    model = probe(name, mode).eval()
    for h, w in [(64, 64), (40, 72), (50, 33), (17, 96)]:
        raw = torch.rand(2, 1, h, w)
        with torch.no_grad():
            out = model(NORM(raw))
        assert out.shape == (2, 1, h, w) and torch.isfinite(out).all()
        # the engine's normalised input is mapped back to the raw image the encoder wants
        assert torch.allclose(out, model.forward_raw(raw), atol=1e-4)


def test_images_in_a_batch_are_decoded_independently() -> None:
    model = probe("tiny_cnn_random", "frozen").eval()
    raw = torch.rand(3, 1, 48, 64)
    with torch.no_grad():
        batch = model.forward_raw(raw)
        single = model.forward_raw(raw[1:2])
    assert torch.allclose(batch[1:2], single, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_decoder_is_segment_anythings_prompt_free_single_mask() -> None:
    model = probe("sam", "frozen")
    assert type(model.decoder) is MaskDecoder and type(model.decoder.transformer) is TwoWayTransformer
    assert type(model.pe_layer) is PositionEmbeddingRandom
    assert model.decoder.num_mask_tokens == 1 and model.no_mask_embed.weight.shape == (1, 256)
    assert model.feature_name == "neck" and model.is_stand_in
    # a CNN is read at stride 16, like SAM's image embedding
    cnn = probe("tiny_cnn_random", "frozen")
    assert cnn.encoder.strides[cnn.feature_index] == 16 and cnn.feature_name == "stage 3"


def gradients(model: ProbeSegmenter) -> tuple[float, float]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss, _ = ProbeObjective("softiou")(model, {"image": torch.rand(2, 1, 64, 64),
                                                "mask": (torch.rand(2, 1, 64, 64) > 0.97).float()})
    loss.backward()

    def total(params) -> float:
        return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)

    return total(model.encoder.parameters()), total(model.neck.parameters()) + total(model.decoder.parameters())


@pytest.mark.parametrize("name", ["tiny_cnn_random", "tiny_vit_random", "sam"])
def test_frozen_mode_trains_only_the_head_and_finetune_the_encoder_too(name: str) -> None:
    frozen = probe(name, "frozen")
    enc_grad, head_grad = gradients(frozen)
    assert enc_grad == 0.0 and head_grad > 0
    assert not any(p.requires_grad for p in frozen.encoder.parameters()) and not frozen.encoder.training
    finetune = probe(name, "finetune")
    enc_grad, head_grad = gradients(finetune)
    assert enc_grad > 0 and head_grad > 0
    assert finetune.encoder.training
    # SAM's IoU head has no target here: kept in the class, never trained
    assert all(p.grad is None for p in finetune.decoder.iou_prediction_head.parameters())


def test_unfreeze_makes_an_encoder_trainable_and_checkpointed() -> None:
    enc = create_encoder("tiny_cnn_random")
    assert enc.frozen and not enc(torch.rand(1, 1, 32, 32)).features[-1].requires_grad
    assert not any(k.startswith("encoder.") for k in trainable_state(torch.nn.ModuleDict({"encoder": enc})))
    assert enc.unfreeze() is enc and enc.frozen is False
    assert type(enc).frozen is True  # only this instance changed
    enc.train()
    assert enc.training and all(p.requires_grad for p in enc.parameters())
    assert enc(torch.rand(2, 1, 64, 64)).features[-1].requires_grad
    assert any(k.startswith("encoder.") for k in trainable_state(torch.nn.ModuleDict({"encoder": enc})))
    enc.freeze()
    enc.train()
    assert enc.frozen and not enc.training and not any(p.requires_grad for p in enc.parameters())


def test_probe_checkpoints_keep_the_encoder_only_when_it_trains() -> None:
    frozen, finetune = probe("tiny_cnn_random", "frozen"), probe("tiny_cnn_random", "finetune")
    assert not any(k.startswith("encoder.") for k in trainable_state(frozen))
    assert any(k.startswith("encoder.") for k in trainable_state(finetune))
    assert any(k.startswith("decoder.") for k in trainable_state(frozen))


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(IrlibInputError, match="mode"):
        ProbeSegmenter(tiny("tiny_cnn_random"), "linear")
    with pytest.raises(IrlibInputError, match="feature_index"):
        ProbeSegmenter(tiny("tiny_cnn_random"), feature_index=7)
    with pytest.raises(IrlibInputError, match="normalize"):
        ProbeSegmenter(tiny("tiny_cnn_random"))(torch.rand(1, 1, 32, 32))
    with pytest.raises(IrlibInputError, match="raw images"):
        probe("tiny_cnn_random", "frozen").forward_raw(torch.rand(1, 2, 32, 32))
    with pytest.raises(IrlibInputError, match="variant"):
        px.ProbeVariant("tiny_cnn_random", None, "partial")


def test_same_seed_same_probe() -> None:
    a, b = probe("tiny_vit_random", "finetune", 3), probe("tiny_vit_random", "finetune", 3)
    c = probe("tiny_vit_random", "finetune", 4)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.neck[0].weight, c.neck[0].weight)


# ------------------------------------------------------------------------------ the study
def tiny_config(**changes) -> px.ProbingConfig:
    settings = dict(variants=[("tiny_cnn_random", None, "frozen"), ("tiny_cnn_random", None, "finetune"),
                              ("tiny_vit_random", None, "frozen")],
                    dataset="synthetic", synthetic_train=6, synthetic_test=3, synthetic_size=64, epochs=3,
                    batch_size=3, crop_size=64, curve_every=2, latency_runs=1, device="cpu", profile="smoke")
    return px.ProbingConfig(**{**settings, **changes})


def test_study_gives_one_row_and_one_curve_per_variant(tmp_path: Path) -> None:
    study = px.run_study(tiny_config())
    table, curves = study.table, study.curves
    assert list(table.columns) == list(px.TABLE_COLUMNS)
    assert list(table["variant"]) == ["tiny_cnn_random-random-frozen", "tiny_cnn_random-random-finetune",
                                      "tiny_vit_random-random-frozen"]
    assert table["stand_in"].all() and (table["init"] == "random").all() and (table["epochs"] == 3).all()
    assert table[["IoU", "nIoU", "Pd", "HSE", "cpu_latency_ms_256", "wall_time_s"]].notna().all().all()
    cnn = table[table["encoder"] == "tiny_cnn_random"].set_index("mode")
    assert cnn["total_params"].nunique() == 1
    assert cnn.loc["frozen", "trainable_params"] < cnn.loc["finetune", "trainable_params"] < cnn.loc[
        "finetune", "total_params"]  # the CNN's stride-32 stage and head feed nothing
    for variant, group in curves.groupby("variant"):
        for split in ("train", "test"):
            assert list(group[group["split"] == split]["epoch"]) == [2, 3], (variant, split)
    assert curves["IoU"].between(0, 100).all()
    paths = px.write_results(study, tmp_path, metadata={"params": "given"})
    saved = json.loads(paths["json"].read_text())
    assert len(saved["results"]) == 3 and saved["metadata"]["params"] == "given"
    assert "STAND-IN" in saved["metadata"]["title"] and "tiny_vit_random" in saved["metadata"]["title"]
    assert paths["csv"].is_file() and len(paths["curves"].read_text().splitlines()) == 1 + 3 * 2 * 2


def test_variants_without_weights_are_skipped_and_all_missing_refused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRLIB_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr("irlib.vfm.weights.REPO_ROOT", tmp_path / "repo")
    sam = px.ProbeVariant("sam_vit_b", None, "finetune", {k: v for k, v in TINY_SAM.items() if k != "weights"})
    cfg = tiny_config(variants=[sam, ("tiny_cnn_random", None, "frozen")])
    with pytest.raises(IrlibInputError, match="no pretrained encoder"):
        px.available_variants(cfg)
    pretrained = px.ProbeVariant("efficientnet_lite0", None, "frozen")
    try:
        px.build_encoder(pretrained, 0)
    except IrlibInputError:
        pytest.skip("efficientnet_lite0 weights package not installed")
    usable, skipped = px.available_variants(tiny_config(variants=[sam, pretrained]))
    assert [v.label for v in usable] == ["efficientnet_lite0-pretrained-frozen"]
    assert skipped[0]["variant"] == "sam_vit_b-pretrained-finetune" and "sam_vit_b" in skipped[0]["reason"]


def test_profiles() -> None:
    smoke = px.make_config("smoke")
    assert smoke.dataset == "synthetic" and len(smoke.variants) == 2
    demo = px.make_config("demo")
    recipe = demo.training_recipe()
    assert demo.dataset == "NUAA-SIRST" and (recipe.name, recipe.loss, recipe.epochs) == ("simir_cpu", "simir", 15)
    assert {(v.encoder, v.init, v.mode) for v in demo.variants} == {
        ("efficientnet_lite0", "pretrained", "frozen"), ("efficientnet_lite0", "pretrained", "finetune"),
        ("efficientnet_lite0", "random", "finetune"), ("mobilenet_v2", "pretrained", "finetune")}
    paper = px.make_config("paper")
    assert paper.training_recipe().name == "simir"
    assert {v.encoder for v in paper.variants} >= {"sam_vit_b", "sam_vit_l", "sam_vit_h", "dinov2_vitb14"}
    with pytest.raises(IrlibInputError, match="unknown probing settings"):
        px.make_config("smoke", encoder="sam_vit_b")
