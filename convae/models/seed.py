"""``seed``: the blog's convolutional autoencoder, unchanged (4x7x7 latent for a 28x28 image)."""

from torch import nn

from convae.models.base import Autoencoder
from convae.models.layers.patchconv import PatchConvTranspose2d
from convae.models.layers.portable import PortableSigmoid
from convae.registry import register_model


class SeedAutoencoder(Autoencoder):
    """Conv(1,16,3) > MaxPool2 > Conv(16,4,3) > MaxPool2 | ConvT(4,16,2,s2) > ReLU > ConvT(16,1,2,s2) > sigmoid."""

    in_channels = 1
    latent_channels = 4
    stride = 4

    def __init__(self, bits: int = 8) -> None:
        super().__init__(bits=bits)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 4, 3, padding=1),
            nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            PatchConvTranspose2d(4, 16, 2),
            nn.ReLU(),
            PatchConvTranspose2d(16, 1, 2),
            PortableSigmoid(),
        )


@register_model("seed", bits=8)
def seed(bits: int = 8) -> SeedAutoencoder:
    """The blog's Fashion-MNIST autoencoder: 4x7x7 latent, 8-bit uniform quantisation."""
    return SeedAutoencoder(bits=bits)
