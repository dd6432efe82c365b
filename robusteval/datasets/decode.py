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


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to uint8 HWC RGB (any mode: CMYK, 16-bit, palette+alpha, grey)."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its pixel limit; treat both as a bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return _to_rgb(im)
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
