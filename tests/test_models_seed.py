"""The `seed` variant is exactly the blog's model."""

import pytest
import torch
from convae.registry import create_model
from torch import nn

from convae.models.layers.patchconv import PatchConvTranspose2d
from convae.models.layers.portable import PortableSigmoid


def test_seed_layers_and_parameter_count():
    net = create_model("seed")
    enc = [type(m) for m in net.encoder]
    dec = [type(m) for m in net.decoder]
    assert enc == [nn.Conv2d, nn.MaxPool2d, nn.Conv2d, nn.MaxPool2d]
    # ConvTranspose2d computed faster, and a sigmoid evaluated in float64 (the same on every CPU)
    assert dec == [PatchConvTranspose2d, nn.ReLU, PatchConvTranspose2d, PortableSigmoid]
    c1, c2 = net.encoder[0], net.encoder[2]
    t1, t2 = net.decoder[0], net.decoder[2]
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.padding) == (1, 16, (3, 3), (1, 1))
    assert (c2.in_channels, c2.out_channels, c2.kernel_size, c2.padding) == (16, 4, (3, 3), (1, 1))
    assert (t1.in_channels, t1.out_channels, t1.kernel_size, t1.stride) == (4, 16, (2, 2), (2, 2))
    assert (t2.in_channels, t2.out_channels, t2.kernel_size, t2.stride) == (16, 1, (2, 2), (2, 2))
    # 16*9+16 + 4*16*9+4 + 4*16*4+16 + 16*4+1
    assert sum(p.numel() for p in net.parameters()) == 160 + 580 + 272 + 65 == 1077


def test_seed_shapes():
    net = create_model("seed")
    x = torch.rand(3, 1, 28, 28)
    y = net.encode(x)
    assert y.shape == (3, 4, 7, 7)
    out = net.decode(y)
    assert out.shape == x.shape and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    assert net.latent_shape(256, 256) == (4, 64, 64)
    assert net.latent_shape(30, 45) == (4, 8, 12)


@pytest.mark.parametrize(("cin", "cout", "k"), [(4, 16, 2), (16, 1, 2), (3, 5, 3)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_patch_conv_transpose_is_conv_transpose(cin, cout, k, layout):
    """Same outputs and gradients as nn.ConvTranspose2d(cin, cout, k, stride=k) with the same parameters."""
    torch.manual_seed(0)
    fast = PatchConvTranspose2d(cin, cout, k).double()
    ref = nn.ConvTranspose2d(cin, cout, k, stride=k).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, cin, 5, 6, dtype=torch.double).contiguous(memory_format=layout)
    outs = []
    for layer in (fast, ref):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel(), dtype=torch.double).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad, layer.weight.grad, layer.bias.grad))
    for got, want in zip(*outs, strict=True):
        torch.testing.assert_close(got, want)
    assert outs[0][0].shape == (3, cout, 5 * k, 6 * k)
    assert torch.autograd.gradcheck(fast, (x.clone().requires_grad_(),))


def test_patch_conv_transpose_loads_conv_transpose_weights():
    """Weights saved from nn.ConvTranspose2d load unchanged (same state-dict keys and shapes)."""
    ref = nn.ConvTranspose2d(4, 16, 2, stride=2)
    fast = PatchConvTranspose2d(4, 16, 2)
    fast.load_state_dict(ref.state_dict())
    z = torch.randn(2, 4, 7, 7)
    with torch.inference_mode():
        torch.testing.assert_close(fast(z), ref(z))


def test_patch_conv_transpose_trains_under_autocast():
    """bfloat16 autocast: inputs and gradients of mixed dtypes still give float32 gradients close to float32's."""
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), PatchConvTranspose2d(4, 2, 2))
        x = torch.randn(2, 3, 6, 6)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            y = net(x)
        y.float().square().mean().backward()
        grads.append([p.grad for p in net.parameters()])
    for fp32, mixed in zip(*grads, strict=True):
        assert mixed.dtype == torch.float32
        torch.testing.assert_close(mixed, fp32, rtol=0.05, atol=0.02)
