"""The `seed` variant is exactly the blog's model."""

import torch
from convae.registry import create_model
from torch import nn


def test_seed_layers_and_parameter_count():
    net = create_model("seed")
    enc = [type(m) for m in net.encoder]
    dec = [type(m) for m in net.decoder]
    assert enc == [nn.Conv2d, nn.MaxPool2d, nn.Conv2d, nn.MaxPool2d]
    assert dec == [nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d, nn.Sigmoid]
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
