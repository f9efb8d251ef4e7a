"""SubPixelConvTranspose2d: nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1), computed faster."""

import pytest
import torch
from convae.registry import create_model
from torch import nn

from convae.models.layers.subpixel import SubPixelConvTranspose2d


def _reference(cin: int, cout: int, bias: bool) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=bias)


@pytest.mark.parametrize(("cin", "cout", "size"), [(6, 3, (5, 7)), (4, 1, (1, 1)), (3, 8, (4, 2))])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [True, False])
def test_sub_pixel_conv_transpose_is_conv_transpose(cin, cout, size, layout, bias):
    """Same outputs and input/weight/bias gradients as nn.ConvTranspose2d with the same parameters."""
    torch.manual_seed(0)
    fast = SubPixelConvTranspose2d(cin, cout, bias=bias).double()
    ref = _reference(cin, cout, bias).double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, cin, *size, dtype=torch.double).contiguous(memory_format=layout)
    outs = []
    for layer in (fast, ref):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel(), dtype=torch.double).view_as(y)).sum().backward()
        outs.append([y.detach(), xi.grad, layer.weight.grad] + ([layer.bias.grad] if bias else []))
    for got, want in zip(*outs, strict=True):
        torch.testing.assert_close(got, want)
    assert outs[0][0].shape == (2, cout, 2 * size[0], 2 * size[1])
    assert torch.autograd.gradcheck(fast, (x.clone().requires_grad_(),))


def test_sub_pixel_conv_transpose_loads_conv_transpose_weights():
    """Weights saved from nn.ConvTranspose2d load unchanged and give its float32 outputs."""
    ref = _reference(48, 3, True)
    fast = SubPixelConvTranspose2d(48, 3)
    fast.load_state_dict(ref.state_dict())
    y = torch.randn(1, 48, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fast(y), ref(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["fm-q2", "fmh-q2", "photoh-q2"])
def test_learned_decoders_end_in_a_sub_pixel_layer(variant):
    """Only the last layer (few output channels) is sub-pixel: for wide layers PyTorch's own is faster."""
    dec = create_model(variant).decoder
    ups = [type(m) for m in dec if isinstance(m, nn.ConvTranspose2d)]
    assert ups[-1] is SubPixelConvTranspose2d and all(t is nn.ConvTranspose2d for t in ups[:-1])
