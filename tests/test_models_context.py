"""The context family (``fmc-q*``): causal decoding steps, exact context path, bit-exact chunk coding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from convae.registry import create_model, list_models

from convae.models.context import ContextHyperpriorAutoencoder
from convae.weightfile import save_weights
from convae.zoo import load_model, warm_start
from tests.conftest import check_chunk_round_trip, make_images, train_tiny, write_pngs

TINY = {"n": 8, "m": 4, "hyper": 8, "z_channels": 4, "ctx_hidden": 8}


def _randomise_context(net: ContextHyperpriorAutoencoder, seed: int) -> None:
    """Give the (zero-initialised) context corrections non-zero weights, so every step depends on the last."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for first, last in net.ctx:
            for layer in (first, last):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.3)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.3)


def test_variants_are_registered_beside_their_hyperprior_twins():
    assert list_models("fmc-q*") == ["fmc-q1", "fmc-q2", "fmc-q3", "fmc-q4", "fmc-q5", "fmc-q6"]
    for q in range(1, 6):
        assert create_model(f"fmc-q{q}").lmbda == create_model(f"fmh-q{q}").lmbda
    assert create_model("fmc-q6").lmbda > create_model("fmc-q5").lmbda  # the top rate has no hyperprior twin


def test_steps_split_each_channel_half_into_a_checkerboard():
    net = create_model("fmc-q1", **TINY)
    ids = net.step_ids(4, 3, 3)
    assert ids[0].tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    assert torch.equal(ids[1], ids[0]) and torch.equal(ids[2], ids[0] + 2) and torch.equal(ids[3], ids[0] + 2)
    assert sorted(torch.unique(ids).tolist()) == list(range(net.steps))


def test_a_fresh_context_model_predicts_what_the_hyperprior_predicts():
    net = create_model("fmc-q1", **TINY)
    y_hat = torch.randint(-4, 5, (2, 4, 7, 7)).float()
    z_hat = torch.round(net.h_a(y_hat))
    with torch.no_grad():
        want = net._hyper_synthesis(z_hat, (7, 7), exact=False)
        got = net._entropy_params(y_hat, z_hat)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("exact", [False, True])
def test_each_step_sees_only_the_latents_of_earlier_steps(exact):
    net = create_model("fmc-q1", **TINY).eval()
    _randomise_context(net, seed=1)
    ids = net.step_ids(4, 7, 7)
    y = torch.randint(-4, 5, (1, 4, 7, 7)).double()
    z = torch.randint(-2, 3, (1, 4, 2, 2)).double()
    dtype = torch.float64 if exact else torch.float32
    with torch.no_grad():
        base = net._hyper_synthesis(z.to(dtype), (7, 7), exact=exact)
        for k in range(1, net.steps):
            known = (y * (ids < k)).to(dtype)
            changed = y + torch.where(ids >= k, 3.0, 0.0)  # alter every latent of this and later steps
            a = net._refine(*base, known, k, exact=exact)
            b = net._refine(*base, (changed * (ids < k)).to(dtype), k, exact=exact)
            assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
            moved = net._refine(*base, (y + 1).to(dtype), k, exact=exact)  # ...while earlier latents matter
            assert not torch.equal(a[0], moved[0])


def test_the_exact_context_path_stays_on_its_grid():
    net = create_model("fmc-q1", **TINY)
    _randomise_context(net, seed=2)
    z = torch.randint(-3, 4, (2, 4, 2, 2)).double()
    base = net._hyper_synthesis(z, (7, 7), exact=True)
    known = torch.randint(-5, 6, (2, 4, 7, 7)).double()
    for v in net._refine(*base, known, 2, exact=True):
        scaled = v * 2.0**14
        assert torch.equal(scaled, torch.round(scaled))
    net.check_exact()
    net.ctx[1][0].weight.data.fill_(1e12)
    with pytest.raises(ValueError, match="context layer"):
        net.check_exact()


@pytest.fixture(scope="module")
def tiny_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny context model trained for one epoch on generated images, its context made non-trivial, saved."""
    folder = tmp_path_factory.mktemp("ctx-train")
    write_pngs(folder, make_images(128, seed=6))
    path = train_tiny(tmp_path_factory.mktemp("ctx-model") / "ctx.safetensors", folder, "fmc-q3", lr=3e-3,
                      **TINY, lmbda=0.01)
    loaded = load_model(str(path))
    _randomise_context(loaded.model, seed=3)
    loaded.model.check_exact()
    save_weights(loaded.model, path, loaded.metadata)
    return path


def test_chunk_round_trip_is_bit_exact_and_thread_independent(tiny_context):
    check_chunk_round_trip(load_model(str(tiny_context)).model)


def test_codes_of_a_context_model_are_refused_by_its_hyperprior_twin(tiny_context, tmp_path):
    from convae.codec.api import compress, decompress
    from convae.errors import ConvaeError

    src = tmp_path / "in"
    write_pngs(src, make_images(5, size=28, seed=12))
    compress([src], tmp_path / "c.npy", model=str(tiny_context))
    twin = create_model("hyperprior", **{k: v for k, v in TINY.items() if k != "ctx_hidden"})
    warm_start(twin, tiny_context)
    save_weights(twin, tmp_path / "twin.safetensors", {})
    with pytest.raises(ConvaeError):
        decompress(tmp_path / "c.npy", tmp_path / "out", model=str(tmp_path / "twin.safetensors"))
    assert not (tmp_path / "out").exists()
    decompress(tmp_path / "c.npy", tmp_path / "ok", model=str(tiny_context))
    assert len(list((tmp_path / "ok").glob("*.png"))) == 5


def test_junk_streams_decode_to_an_error_or_to_valid_symbols(tiny_context):
    from convae.errors import FormatError

    net = load_model(str(tiny_context)).model
    coder = net.entropy_coder(net.quantizer)
    shapes = [(4, 7, 7)] * 3
    rng = np.random.default_rng(1)
    for _ in range(50):
        junk = rng.integers(0, 2**32, size=int(rng.integers(1, 40)), dtype=np.uint32).tobytes()
        try:
            out = coder.decode(junk, shapes)
        except FormatError:
            continue
        assert all(int(s.min()) >= 0 and int(s.max()) < int(net.quantizer.levels) for s in out)


@pytest.mark.parametrize("name", list_models("fmc-q*"))
def test_shipped_context_models_load_calibrated_and_code_bit_exactly(name):
    from convae.zoo import shipped_weights

    if shipped_weights(name) is None:
        pytest.skip(f"{name} weights are not shipped")
    loaded = load_model(name)
    net = loaded.model
    net.check_exact()
    assert net.quantizer.calibrated and net.y_freqs.numel() > 0
    assert loaded.metadata["init_variant"] in list_models("fm[ch]-q*")  # warm-started as recorded
    assert "train_zoo.sh" in loaded.metadata["command"] and loaded.metadata["dataset"].startswith("fashion-mnist:")
    assert all(float(last.weight.detach().abs().max()) > 0 for _, last in net.ctx)  # trained away from the zero start
    assert net.mean_steps == 8 and float(net.decoder[-1].layers[-1].weight.detach().abs().max()) > 0  # post-filter
    check_chunk_round_trip(net, sizes=((28, 20),))


def test_shipped_weights_stay_under_20_mb():
    from importlib import resources

    folder = Path(str(resources.files("convae") / "weights"))
    assert sum(p.stat().st_size for p in folder.glob("*.safetensors")) < 20_000_000
