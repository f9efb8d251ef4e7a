"""Measure each shipped variant's bpp and PSNR once, for `convae models`: writes convae/weights/measured.json.

Gray variants: the first 1000 Fashion-MNIST test images; photo variants: the first 30 BSDS500/val
photos (sorted). Real coded bytes: the whole code file ``convae.codec.api.compress`` writes (manifest
included) over the images' pixels; PSNR: of the mean MSE (``psnr``, as ``convae eval``) and the mean of
per-image PSNRs (``mean_psnr``), from compress's ``verify``, which decodes the very symbols written.
Run: ``python scripts/measure_zoo.py [DATA_ROOT]`` (about a minute on two cores).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from convae.registry import get_spec, list_models
from PIL import Image

from convae.codec.api import compress
from convae.data import load_fashion_mnist
from convae.zoo import shipped_weights

ROOT = Path(__file__).resolve().parents[1]
FASHION_IMAGES, PHOTOS = 1000, 30


def _eval_sets(data: Path, tmp: Path) -> dict[int, tuple[str, list[Path]]]:
    """Per input channel count: the eval set's name and its image files."""
    gray = tmp / "fashion"
    gray.mkdir()
    test = load_fashion_mnist(data / "fashion-mnist", ("test",))["test"].images[:FASHION_IMAGES]
    for i, img in enumerate(test):
        Image.fromarray(img[0].numpy(), "L").save(gray / f"{i:04d}.png")
    photos = sorted((data / "photos/BSDS500/val").glob("*.jpg"))[:PHOTOS]
    return {1: (f"Fashion-MNIST test, first {FASHION_IMAGES} images", sorted(gray.glob("*.png"))),
            3: (f"BSDS500 val, first {PHOTOS} photos (sorted by name)", photos)}


def main(data: Path) -> None:
    """Measure every variant with shipped weights and write the table."""
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = _eval_sets(data, Path(tmp))
        for name in list_models("*"):
            if shipped_weights(name) is None:
                continue
            eval_set, files = sets[get_spec(name).config.get("in_channels", 1)]
            s = compress(files, Path(tmp) / f"{name}.npy", model=name, verify=True, force=True)
            row = s.as_dict()
            table[name] = {"bpp": row["bpp"], "psnr": row["psnr"], "mean_psnr": row["verify"]["mean_psnr"],
                           "images": s.images, "eval_set": eval_set}
            print(name, table[name], flush=True)
    out = ROOT / "convae/weights/measured.json"
    out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/data")
