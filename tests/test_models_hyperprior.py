"""The mean-scale hyperprior family: exact side path, Gaussian tables, bit-exact chunk coding, warm starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from convae.registry import create_model, list_models
from PIL import Image

from convae.errors import FormatError, WeightsError
from convae.models.hyperprior import HyperpriorAutoencoder, gaussian_tables
from convae.models.learned import PostFilter
from convae.weightfile import save_weights
from convae.zoo import DEFAULT_MODEL, load_model, shipped_weights, warm_start
from tests.conftest import check_chunk_round_trip, make_images, train_tiny, write_pngs

TINY = {"n": 8, "m": 4, "hyper": 8, "z_channels": 4}


def test_variants_are_registered():
    names = list_models("fmh-q*")
    assert names == ["fmh-q1", "fmh-q2", "fmh-q3", "fmh-q4", "fmh-q5"]
    assert list_models("photoh-*") == ["photoh-q0", "photoh-q1", "photoh-q2", "photoh-q3"]
    assert DEFAULT_MODEL == "photov" and create_model(DEFAULT_MODEL).in_channels == 3
    lambdas = [create_model(n).lmbda for n in names]
    assert lambdas == sorted(lambdas)


def test_gaussian_tables_are_normalised_discretised_gaussians():
    t = gaussian_tables(10, 4)
    assert t.shape == (48 * 4, 21) and t.dtype == torch.int32 and int(t.min()) >= 1
    assert (t.sum(1) - 2**16).abs().max() <= 21  # floor + 1 per symbol
    narrow, wide = t[0], t[4 * 40]
    assert int(narrow.argmax()) == 10 and narrow[10] > 0.99 * 2**16  # scale 0.11 centred at 0.125: one symbol
    assert wide[10] < 0.05 * 2**16 and wide[0] > wide[5]  # scale ~17: spread out, tails folded into the ends
    assert int(t[3].argmax()) == 11  # centre 0.875 favours +1
    eighths = gaussian_tables(10, 8)  # centres 1/16, 3/16, ..., 15/16
    assert eighths.shape == (48 * 8, 21)
    assert int(eighths[8 * 10 + 3].argmax()) == 10 and int(eighths[8 * 10 + 4].argmax()) == 11
    mirrored = eighths.view(48, 8, 21).flip(1, 2).reshape(48 * 8, 21)  # centre c, symbol s <-> 1 - c, 1 - s
    assert (eighths[:, 2:-1] - mirrored[:, 1:-2]).abs().max() <= 1  # away from the folded tails


def test_side_size_matches_the_hyper_analysis():
    net = create_model("hyperprior", **TINY)
    for h, w in [(7, 7), (1, 1), (5, 12), (8, 3)]:
        z = net.h_a(torch.zeros(1, 4, h, w))
        assert tuple(z.shape[-2:]) == net.side_size(h, w)
        mean, log_scale = net._hyper_synthesis(z, (h, w), exact=False)
        assert mean.shape == log_scale.shape == (1, 4, h, w)


@pytest.fixture(scope="module")
def tiny_hyper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny hyperprior model trained for one epoch on generated images, calibrated and saved."""
    folder = tmp_path_factory.mktemp("hp-train")
    write_pngs(folder, make_images(128, seed=5))
    return train_tiny(tmp_path_factory.mktemp("hp-model") / "hp.safetensors", folder, "hyperprior", lr=3e-3,
                      **TINY, lmbda=0.01)


def _symbols(net: HyperpriorAutoencoder, n: int, size: int, seed: int) -> list[np.ndarray]:
    x = torch.from_numpy(make_images(n, size=size, seed=seed)).float().div(255)[:, None]
    with torch.no_grad():
        return list(net.quantizer.to_symbols(net.encode(x)).numpy())


def test_chunk_round_trip_is_bit_exact_and_thread_independent(tiny_hyper):
    check_chunk_round_trip(load_model(str(tiny_hyper)).model)


def test_exact_side_path_stays_on_its_grid(tiny_hyper):
    net = load_model(str(tiny_hyper)).model
    z = torch.randint(-3, 4, (2, 4, 3, 3))
    mean, log_scale = net._hyper_synthesis(z.double(), (9, 10), exact=True)
    for v in (mean, log_scale):  # every value is a multiple of 2^-(8+6): no rounding happened anywhere
        scaled = v * 2.0**14
        assert torch.equal(scaled, torch.round(scaled))
    net.check_exact()
    net.h_s[2].weight.data.fill_(1e12)
    with pytest.raises(ValueError, match="exact"):
        net.check_exact()


def test_the_coded_rate_matches_the_models_estimate(tiny_hyper):
    net = load_model(str(tiny_hyper)).model
    x = torch.from_numpy(make_images(64, size=28, seed=21)).float().div(255)[:, None]
    with torch.no_grad():
        _, bits = net(x)
        symbols = list(net.quantizer.to_symbols(net.encode(x)).numpy())
    coded = 8 * len(net.entropy_coder(net.quantizer).encode(symbols))
    assert 0.7 * float(bits) < coded < 1.3 * float(bits) + 64


def test_corrupt_streams_are_refused(tiny_hyper):
    net = load_model(str(tiny_hyper)).model
    coder = net.entropy_coder(net.quantizer)
    symbols = _symbols(net, 4, 28, seed=3)
    data = coder.encode(symbols)
    shapes = [s.shape for s in symbols]
    with pytest.raises(FormatError):
        coder.decode(data[:-1], shapes)
    with pytest.raises(FormatError):
        coder.decode(data + b"\x01\x00\x00\x00", shapes)
    rng = np.random.default_rng(0)
    for _ in range(50):  # random words: decoded into garbage that is caught, or into valid symbols; never a crash
        junk = rng.integers(0, 2**32, size=max(1, len(data) // 4), dtype=np.uint32).tobytes()
        try:
            out = coder.decode(junk, shapes)
        except FormatError:
            continue
        assert all(int(s.min()) >= 0 and int(s.max()) < int(net.quantizer.levels) for s in out)


def test_warm_start_lends_matching_transforms_only(tmp_path):
    torch.manual_seed(0)
    donor = create_model("factorized", n=8, m=4, lmbda=0.01)
    path = tmp_path / "donor.safetensors"
    save_weights(donor, path, {})
    net = create_model("hyperprior", **TINY)
    record = warm_start(net, path)
    assert record["init_variant"] == "factorized" and int(record["init_tensors"]) > 0
    assert torch.equal(net.encoder[0].weight, donor.encoder[0].weight)
    assert torch.equal(net.decoder[0].weight, donor.decoder[0].weight)
    with pytest.raises(WeightsError, match=r"no tensor of 'factorized' matches"):
        warm_start(create_model("seed"), path)


def test_codec_round_trip_through_compress_and_decompress(tiny_hyper, tmp_path):
    from convae.codec.api import compress, decompress

    src = tmp_path / "in"
    write_pngs(src / "a", make_images(70, size=28, seed=8))  # two chunks of one size
    write_pngs(src / "b", make_images(3, size=30, seed=9))  # padded to the stride and cropped back
    first = compress([src], tmp_path / "a.npy", model=str(tiny_hyper))
    compress([src], tmp_path / "b.npy", model=str(tiny_hyper))
    assert first.extra["coding"] == "ans" and first.images == 73
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    decompress(tmp_path / "a.npy", tmp_path / "out", model=str(tiny_hyper))
    net = load_model(str(tiny_hyper)).model
    for folder, size, seed in (("a", 28, 8), ("b", 30, 9)):
        imgs = make_images(3, size=size, seed=seed)
        for i, a in enumerate(imgs):
            got = np.asarray(Image.open(tmp_path / "out" / folder / f"img{i:04d}.png"))
            pad = -size % net.stride
            x = torch.nn.functional.pad(torch.from_numpy(a).float().div(255)[None, None], (0, pad, 0, pad),
                                        mode="replicate")
            with torch.no_grad():  # what the codec produces: encode, quantise, decode
                recon = net.decode(net.quantizer.quantize(net.encode(x)))
            want = recon[0, 0, :size, :size].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
            assert np.array_equal(got, want)


def test_float16_copy_codes_like_the_original(tiny_hyper, tmp_path):
    from convae.weightfile import read_weights, save_half

    half = tmp_path / "half.safetensors"
    save_half(tiny_hyper, half)
    state, meta, _ = read_weights(half)
    assert meta["stored_dtype"] == "float16" and meta["float32_sha256"] == read_weights(tiny_hyper)[2]
    assert state["encoder.0.weight"].dtype == torch.float16 and state["y_freqs"].dtype == torch.int32  # exact as it is
    assert half.stat().st_size < 0.75 * tiny_hyper.stat().st_size
    net = load_model(str(half)).model
    assert net.encoder[0].weight.dtype == torch.float32
    symbols = _symbols(net, 5, 28, seed=4)
    coder = net.entropy_coder(net.quantizer)
    back = coder.decode(coder.encode(symbols), [s.shape for s in symbols])
    assert all(np.array_equal(a, b) for a, b in zip(symbols, back, strict=True))


@pytest.mark.skipif(shipped_weights(DEFAULT_MODEL) is None, reason=f"{DEFAULT_MODEL} weights are not shipped")
def test_default_model_codes_any_size_rgb_and_gray_photos(runner, tmp_path):
    from convae.cli.app import app

    src = tmp_path / "photos"
    src.mkdir()
    blobs = make_images(3, size=45, seed=11)
    Image.fromarray(np.stack(blobs, axis=-1)[:37]).save(src / "rgb.png")
    Image.fromarray(blobs[0][:, :29]).save(src / "gray.png")
    assert runner.invoke(app, ["compress", str(src), str(tmp_path / "c.npy"), "--quiet"]).exit_code == 0
    assert runner.invoke(app, ["decompress", str(tmp_path / "c.npy"), str(tmp_path / "out"), "--quiet"]).exit_code == 0
    with Image.open(tmp_path / "out" / "rgb.png") as rgb, Image.open(tmp_path / "out" / "gray.png") as gray:
        assert (rgb.mode, rgb.size) == ("RGB", (45, 37))
        assert (gray.mode, gray.size) == ("L", (29, 45))


def test_history_records_the_epoch_mean_rate(tiny_hyper):
    import json

    from convae.training.train import history_path

    record = json.loads(history_path(tiny_hyper).read_text())["history"][-1]
    assert record["bpp"] > 0 and record["train_mse"] > 0  # the rate term is logged per epoch, beside the MSE


def test_post_filter_starts_as_the_identity_so_a_warm_start_keeps_the_output(tiny_hyper):
    old = load_model(str(tiny_hyper)).model
    new = create_model("hyperprior", **TINY, lmbda=0.01, post=8)
    record = warm_start(new, tiny_hyper)  # same variant, other config: lends what fits by name and shape
    assert int(record["init_tensors"]) == len(dict(old.named_parameters()))
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    new.eval()
    x = torch.from_numpy(make_images(4, size=28, seed=8)).float().div(255)[:, None]
    with torch.no_grad():
        assert torch.equal(new.decode(torch.round(new.encode(x))), old.decode(torch.round(old.encode(x))))


def test_eighth_step_means_code_bit_exactly_and_need_their_own_tables(tiny_hyper):
    net = load_model(str(tiny_hyper)).model
    assert net.mean_steps == 4 and net.entropy_coder(net.quantizer) is not None
    net.mean_steps = 8
    assert net.entropy_coder(net.quantizer) is None  # quarter-step tables cannot code eighth steps
    net.y_freqs = gaussian_tables(int(net.quantizer.levels) - 1, 8)
    check_chunk_round_trip(net)


@pytest.mark.parametrize("name", ["fmh-q3", "photoh-q2"])
def test_weights_saved_before_post_and_mean_steps_existed_load_as_they_were_trained(name):
    if shipped_weights(name) is None:
        pytest.skip(f"{name} weights are not shipped")
    loaded = load_model(name)
    stored = json.loads(loaded.metadata["config"])
    assert "post" not in stored and "mean_steps" not in stored  # saved before the options existed
    assert loaded.model.mean_steps == 4 and loaded.model.y_freqs.shape[0] == 48 * 4
    assert not any(isinstance(m, PostFilter) for m in loaded.model.modules())


@pytest.mark.parametrize("size", [(200, 37), (131, 20), (64, 9), (65, 3), (4, 5)])
def test_the_hyper_synthesis_in_bands_equals_the_whole_grid(size):
    """Bands of latent rows (with their side-latent context) give exactly the whole grid's numbers."""
    net = load_model(DEFAULT_MODEL).model
    h, w = size
    lo, hi = int(net.z_quantizer.lo.min()), int(net.z_quantizer.hi.max())
    z = torch.randint(max(lo, -6), min(hi, 6) + 1, (2, net.z_quantizer.lo.numel(), *net.side_size(h, w)),
                      generator=torch.Generator().manual_seed(h * w)).double()
    mean, log_scale = net.exact_hyper(z, size)
    for first in range(0, h, 12):
        last = min(h, first + 12)
        band_mean, band_log_scale = net.exact_hyper_rows(z, size, (first, last))
        assert torch.equal(band_mean, mean[..., first:last, :]), (size, first)
        assert torch.equal(band_log_scale, log_scale[..., first:last, :]), (size, first)


def test_streams_coded_in_bands_are_the_same_bytes(monkeypatch):
    """The coder's banded tables change no byte of a stream, and it decodes back (here 4 bands of 8 rows)."""
    import convae.entropy.hyperprior as coder_module
    from convae.codec.inference import encode_batch, select_quantizer
    from convae.images import Decoded

    net = load_model(DEFAULT_MODEL).model
    q = select_quantizer(net, None)
    rng = np.random.default_rng(5)
    pixels = (np.add.outer(np.arange(250), np.arange(90))[..., None] % 200 + rng.integers(0, 40, (250, 90, 3)))
    decoded = [Decoded(pixels.astype(np.uint8), None, "RGB", False)]
    symbols = encode_batch(net, q, decoded, "cpu", verify=False)[0]
    whole = net.entropy_coder(q)
    monkeypatch.setattr(coder_module, "BAND_ROWS", 10_000)
    one_band = whole.encode(symbols)
    monkeypatch.setattr(coder_module, "BAND_ROWS", 8)
    banded = net.entropy_coder(q)
    assert banded.encode(symbols) == one_band
    back = banded.decode(one_band, [symbols[0].shape])
    assert np.array_equal(back[0], symbols[0])
