"""Classical reference codecs for the RD report: Pillow's JPEG, WebP, AVIF and PNG, and PCA at 8 bits.

Every function returns a :class:`Point`: bits per pixel from the real encoded bytes (headers
included), distortion of the decoded 8-bit images, and encode/decode seconds per image.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from convae.images import batched
from convae.metrics import Distortion

FORMATS = {"jpeg": ("JPEG", {}), "webp": ("WEBP", {"method": 6}), "avif": ("AVIF", {"speed": 6}),
           "avif444": ("AVIF", {"speed": 6, "subsampling": "4:4:4"})}  # full-resolution colour (Pillow: 4:2:0)


@dataclass
class Point:
    """One rate-distortion point of one codec."""

    bpp: float
    psnr: float  # PSNR of the mean MSE over all images
    mean_psnr: float  # mean of per-image PSNRs (capped at 100 dB)
    ssim: float
    encoding_time: float  # seconds per image
    decoding_time: float
    setting: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain dict, floats rounded for JSON."""
        return {k: _json_float(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _json_float(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None  # lossless PSNR is infinite: JSON null


def distortion(originals: Sequence[np.ndarray], recons: Sequence[np.ndarray]) -> dict[str, float]:
    """PSNR of the mean MSE, mean per-image PSNR and mean SSIM of uint8 ``(H, W, C)`` image pairs."""
    if len(originals) != len(recons):
        raise ValueError("originals and reconstructions differ in number")
    same_size = len({a.shape for a in originals}) == 1
    d = Distortion()
    for batch in batched(range(len(originals)), 1000 if same_size else 1):
        d.add_pixels([originals[i] for i in batch], [recons[i] for i in batch])
    r = d.report()
    return {"psnr": r["psnr"], "mean_psnr": r["mean_psnr"], "ssim": r["ssim"]}


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[:, :, 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


def _encode(img: Image.Image, codec: str, quality: int | None) -> bytes:
    fmt, extra = FORMATS.get(codec, ("PNG", {"optimize": True}))
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if quality is not None else {}), **extra)
    return buf.getvalue()


def _decode(data: bytes, channels: int) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        a = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    return a[:, :, None] if a.ndim == 2 else a


def _pixels(images: Sequence[np.ndarray]) -> int:
    return sum(a.shape[0] * a.shape[1] for a in images)


def per_image(images: Sequence[np.ndarray], codec: str, quality: int | None) -> Point:
    """Each image in its own file (``codec`` in jpeg/webp/avif/avif444/png; png ignores ``quality``)."""
    nbytes, recons, t_enc, t_dec = 0, [], 0.0, 0.0
    for a in images:
        t0 = time.perf_counter()
        data = _encode(_pil(a), codec, quality)
        t1 = time.perf_counter()
        recons.append(_decode(data, a.shape[2]))
        t_dec += time.perf_counter() - t1
        t_enc += t1 - t0
        nbytes += len(data)
    n = len(images)
    return Point(8 * nbytes / _pixels(images), **distortion(images, recons), encoding_time=t_enc / n,
                 decoding_time=t_dec / n, setting={"quality": quality, "bytes": nbytes})


def tile(images: np.ndarray, cols: int) -> np.ndarray:
    """``(N, H, W, C)`` images as one ``(rows*H, cols*W, C)`` mosaic (missing tiles black)."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    padded = np.zeros((rows * cols, h, w, c), dtype=images.dtype)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def untile(mosaic: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Inverse of :func:`tile`: the first ``n`` tiles."""
    rows, cols, c = mosaic.shape[0] // h, mosaic.shape[1] // w, mosaic.shape[2]
    return mosaic.reshape(rows, h, cols, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * cols, h, w, c)[:n]


def mosaic(images: np.ndarray, codec: str, quality: int | None) -> Point:
    """All same-size images tiled into one picture and coded as one file (headers amortised)."""
    n, h, w, _ = images.shape
    big = tile(images, math.ceil(math.sqrt(n)))
    t0 = time.perf_counter()
    data = _encode(_pil(big), codec, quality)
    t1 = time.perf_counter()
    recon = untile(_decode(data, images.shape[3]), n, h, w)
    t2 = time.perf_counter()
    return Point(8 * len(data) / (n * h * w), **distortion(images, recon), encoding_time=(t1 - t0) / n,
                 decoding_time=(t2 - t1) / n, setting={"quality": quality, "bytes": len(data)})


def pca(train: np.ndarray, test: np.ndarray, ks: Sequence[int]) -> list[Point]:
    """``k`` principal components fitted on ``train``, each coefficient uniformly quantised to 8 bits.

    The basis, mean and per-component ranges belong to the decoder (like a model's weights);
    the rate is ``8 * k`` bits per image. One point per ``k`` in ``ks``.
    """
    x = train.reshape(len(train), -1).astype(np.float64) / 255
    mean = x.mean(0)
    full = np.linalg.svd(x - mean, full_matrices=False)[2]
    y = test.reshape(len(test), -1).astype(np.float64) / 255
    points = []
    for k in ks:
        basis = full[:k]
        coef = (x - mean) @ basis.T
        lo = coef.min(0)
        step = np.maximum(coef.max(0) - lo, 1e-12) / 255
        t0 = time.perf_counter()
        codes = np.clip(np.rint(((y - mean) @ basis.T - lo) / step), 0, 255).astype(np.uint8)
        t1 = time.perf_counter()
        recon = np.clip(np.rint(((codes * step + lo) @ basis + mean) * 255), 0, 255).astype(np.uint8)
        t2 = time.perf_counter()
        n = len(test)
        points.append(Point(8 * k / y.shape[1], **distortion(test, recon.reshape(test.shape)),
                            encoding_time=(t1 - t0) / n, decoding_time=(t2 - t1) / n, setting={"components": k}))
    return points
