"""The blog's training pipeline, rebuilt faithfully as a baseline (run as a script; prints one JSON line).

torchvision ``FashionMNIST`` + ``ToTensor`` + ``DataLoader(batch_size=20, shuffle=True)``, Adam 1e-3,
``MSELoss``, and the blog's network written with stock PyTorch layers (``BlogAutoencoder``: the layers
and parameters of convae's ``seed``, which computes its transposed convolutions its own faster way;
the baseline keeps ``nn.ConvTranspose2d``, as the blog had). The IDX files are extracted into a
temporary ``root/FashionMNIST/raw`` with torchvision's own ``extract_archive`` (what ``download=True``
does after downloading), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, transforms
from torchvision.datasets.utils import extract_archive

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class BlogAutoencoder(nn.Module):
    """The blog's convolutional autoencoder: the layers the blog lists, stock PyTorch modules, default (NCHW) layout."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.MaxPool2d(2),
                                     nn.Conv2d(16, 4, 3, padding=1), nn.MaxPool2d(2))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(4, 16, 2, stride=2), nn.ReLU(),
                                     nn.ConvTranspose2d(16, 1, 2, stride=2), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``."""
        return self.decoder(self.encoder(x))


def torchvision_root(fashion: Path, tmp: Path) -> Path:
    """A torchvision-style root whose ``FashionMNIST/raw`` holds the extracted IDX files."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX:
        link = raw / f"{name}.gz"
        link.symlink_to((fashion / f"{name}.gz").resolve())
        extract_archive(str(link), str(raw))
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="folder with the four Fashion-MNIST .gz files")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: whole epochs)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(args.data, Path(tmp))
        train_data = datasets.FashionMNIST(root=str(root), train=True, download=False,
                                           transform=transforms.ToTensor())
        train_loader = torch.utils.data.DataLoader(train_data, batch_size=20, shuffle=True)
        model = BlogAutoencoder().to(args.device)
        criterion = nn.MSELoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
        seen, steps, train_loss = 0, 0, 0.0
        start = time.perf_counter()
        for _ in range(args.epochs):
            for images, _ in train_loader:
                images = images.to(args.device)
                optimizer.zero_grad()
                outputs = model(images)
                loss = criterion(outputs, images)
                loss.backward()
                optimizer.step()
                train_loss += loss.item() * images.size(0)
                seen += images.size(0)
                steps += 1
                if steps == args.steps:
                    break
            if steps == args.steps:
                break
        seconds = time.perf_counter() - start
    print(json.dumps({"images": seen, "steps": steps, "seconds": round(seconds, 3),
                      "images_per_s": round(seen / seconds, 1), "train_mse": round(train_loss / seen, 6),
                      "threads": args.threads, "device": args.device, "epoch_images": len(train_data)}))


if __name__ == "__main__":
    main()
