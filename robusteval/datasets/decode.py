"""Decoding any image file users have into uint8 RGB, and the standard eval crop.

Every failure becomes :class:`BadImage` with a one-line reason, so callers can record a skip
instead of crashing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class BadImage(Exception):
    """An input that cannot be used; ``str(err)`` is a one-line reason."""


#: Shorter sides below this many px carry no usable content at 224 px (a 1x1 image would be
#: upscaled to a flat 224x224 patch); they are skipped with a recorded reason.
MIN_SIDE = 8
#: Long side / short side above this is refused before decoding: the eval resize scales the short
#: side to ~256 px, so memory grows with the ratio (1x12000 → 256 x 3,072,000 px, 3.3 GB).
MAX_ASPECT = 64


def check_geometry(width: int, height: int) -> None:
    """Raise :class:`BadImage` for images too small or too elongated to resize safely (px)."""
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE:
        raise BadImage(f"too small ({width}x{height} px; the shorter side must be at least {MIN_SIDE} px)")
    if long > MAX_ASPECT * short:
        raise BadImage(
            f"extreme aspect ratio ({width}x{height} px, over {MAX_ASPECT}:1); "
            "resizing it would need a huge buffer"
        )


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to uint8 HWC RGB (any mode: CMYK, 16-bit, palette+alpha, grey)."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its pixel limit; treat both as a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                check_geometry(*im.size)  # before decoding: the header is enough
                im.load()
                return _to_rgb(im)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(f"over PIL's decompression-bomb limit ({err.__class__.__name__})") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else -1
        raise BadImage("empty file (0 bytes)" if size == 0 else "not an image PIL can read") from None
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except PermissionError:
        raise BadImage("unreadable (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise BadImage(f"decode failed: {first}") from None


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale by the full 16-bit range, not clip, so contrast survives.
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode == "F" or im.mode.startswith("I;16F"):
        # float images (TIFF/EXR style): values 0..1 are intensities; above 1 they are 0..255 data.
        arr = np.asarray(im, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        # Flatten transparency onto white, the convention of browsers and PIL's thumbnails.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def resize_center_crop(img: np.ndarray, *, resize: int = 256, crop: int = 224) -> np.ndarray:
    """Resize the shorter side to ``resize`` px (bilinear, antialiased), then center-crop ``crop`` px.

    ``img``: uint8 HWC RGB. Returns uint8 ``crop``×``crop``×3.
    """
    h, w = img.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(crop, round(h * scale)), max(crop, round(w * scale))
    pil = Image.fromarray(img).resize((nw, nh), Image.BILINEAR)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return np.asarray(pil.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
