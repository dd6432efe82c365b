"""The 19 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) as seeded, pure ops.

Each op is ``op(image, *, seed, **params) -> image`` on uint8 HWC RGB (any size; the published
ladders in ``transforms/imagenet_c.toml`` assume 224×224) and takes its per-severity parameters
from the TOML, never from a severity index. Formulas follow the reference generation script
(``make_imagenet_c.py``); every random draw comes from ``np.random.RandomState(seed)`` in the
reference's order, so the global numpy state is never read or changed, and float results become
uint8 by truncation, as the reference's ``np.uint8(...)`` before saving.

So an op seeded with ``s`` gives the bytes the reference gives after ``np.random.seed(s)``. That
was checked offline on real 224 crops, all severities, against the reference script itself
(ImageMagick 6.9 through Wand, current OpenCV/SciPy/Pillow): bit-identical for 17 ops, and frost
is tested against the reference formula (``tests/test_imagenet_c.py``). The limits:

* impulse noise equals the original only with the scikit-image of 2018: it draws as that
  version's ``random_noise`` did (``random_sample < amount``, i.e. its ``np.random.choice``);
  today's scikit-image draws from its own generator, so its bytes and per-image outcomes differ;
* snow and motion blur need ImageMagick-equivalent motion blur: they re-implement ImageMagick's
  ``MotionBlurImage`` kernel and its Q16 rounding in numpy instead of calling Wand (bit-identical
  to the original run with ImageMagick; imagecorruptions 1.1.2 uses its own kernel and differs);
* elastic transform follows the original script; imagecorruptions 1.1.2 uses a different formula
  and parameters (MobileNetV2 accuracy differs by about 20 points);
* frost blends the reference's photographs when the ``imagenet-c`` extra (``imagecorruptions``,
  which ships them as package data) is installed, else procedural textures (``imagenet_c_frost``;
  a warning, and the spec hash says which);
* glass blur replays the reference's sequential pixel moves on an index list (same result,
  about a thousand times faster);
* the corrupt stage stores lossless PNG, while released ImageNet-C stores JPEG quality 85.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from robusteval.corrupt.reference import OPS
from robusteval.corrupt.reference import imagenet_c_kernels as K

_META = {"suite": "imagenet-c", "source": "Hendrycks & Dietterich 2019, make_imagenet_c.py"}


def _float01(image: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    return image.astype(dtype) / 255.0


def _gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage ``filters.gaussian`` semantics: spatial σ only (channels untouched)."""
    from scipy.ndimage import gaussian_filter

    sig = (sigma, sigma) + (0,) * (x.ndim - 2)
    return gaussian_filter(x, sig, mode=mode, truncate=truncate)


# ---------------------------------------------------------------- noise


@OPS.register("c_gaussian_noise", random=True, **_META)
def gaussian_noise(image: np.ndarray, *, seed: int, scale: float) -> np.ndarray:
    """Add N(0, ``scale``²) per pixel and channel to the image in [0, 1]."""
    rng = np.random.RandomState(seed)
    x = _float01(image)
    return K.to_uint8(x + rng.normal(size=x.shape, scale=scale))


@OPS.register("c_shot_noise", random=True, **_META)
def shot_noise(image: np.ndarray, *, seed: int, photons: float) -> np.ndarray:
    """Poisson photon noise: ``Poisson(x·photons)/photons`` for x in [0, 1] (fewer photons: noisier)."""
    rng = np.random.RandomState(seed)
    x = _float01(image)
    return K.to_uint8(rng.poisson(x * photons) / photons)


@OPS.register("c_impulse_noise", random=True, **_META)
def impulse_noise(image: np.ndarray, *, seed: int, amount: float) -> np.ndarray:
    """Salt and pepper per pixel *and channel* (skimage ``random_noise(mode='s&p')``): a fraction
    ``amount`` of values is replaced, half by 0 and half by 255. Draws in the 2018 scikit-image
    order (equal to the original only with that scikit-image; today's draws differ)."""
    rng = np.random.RandomState(seed)
    x = _float01(image)
    flipped = rng.random_sample(x.shape) < amount
    salted = rng.random_sample(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return K.to_uint8(x)


@OPS.register("c_speckle_noise", random=True, **_META)
def speckle_noise(image: np.ndarray, *, seed: int, scale: float) -> np.ndarray:
    """Multiplicative noise ``x + x·N(0, scale²)`` in [0, 1]."""
    rng = np.random.RandomState(seed)
    x = _float01(image)
    return K.to_uint8(x + x * rng.normal(size=x.shape, scale=scale))


# ---------------------------------------------------------------- blur


@OPS.register("c_gaussian_blur", random=False, **_META)
def gaussian_blur(image: np.ndarray, *, seed: int, sigma: float) -> np.ndarray:
    """Gaussian blur of σ = ``sigma`` px (edges repeat, kernel truncated at 4σ). Not random."""
    del seed
    return K.to_uint8(_gaussian(_float01(image), sigma))


@OPS.register("c_glass_blur", random=True, **_META)
def glass_blur(image: np.ndarray, *, seed: int, sigma: float, max_delta: int, iterations: int) -> np.ndarray:
    """Blur (σ px), ``iterations`` passes of local pixel swaps within ``max_delta`` px, blur again."""
    rng = np.random.RandomState(seed)
    h, w = image.shape[:2]
    blurred = (_gaussian(_float01(image), sigma) * 255).astype(np.uint8)
    perm = K.glass_permutation(rng, height=h, width=w, max_delta=int(max_delta), iterations=int(iterations))
    shuffled = blurred.reshape(h * w, -1)[perm].reshape(image.shape)
    return K.to_uint8(_gaussian(shuffled / 255.0, sigma))


@OPS.register("c_defocus_blur", random=False, **_META)
def defocus_blur(image: np.ndarray, *, seed: int, radius: float, alias_blur: float) -> np.ndarray:
    """Convolve with an anti-aliased disk of ``radius`` px (OpenCV ``filter2D``, reflect-101 border)."""
    import cv2

    del seed
    kernel = K.disk_kernel(radius, alias_blur)
    return K.to_uint8(cv2.filter2D(_float01(image), -1, kernel))


@OPS.register("c_motion_blur", random=True, **_META)
def motion_blur(
    image: np.ndarray, *, seed: int, radius: float, sigma: float, angle: tuple[float, float]
) -> np.ndarray:
    """ImageMagick-style motion blur (one-sided Gaussian of ``sigma`` over ``2·ceil(radius)+1``
    taps) along a direction drawn uniformly from ``angle`` = [lo, hi] degrees. Equals the original
    run with ImageMagick (Wand), not imagecorruptions' numpy kernel."""
    rng = np.random.RandomState(seed)
    theta = rng.uniform(angle[0], angle[1])
    return K.motion_blur_u8(image, radius=radius, sigma=sigma, angle_deg=theta)


@OPS.register("c_zoom_blur", random=False, **_META)
def zoom_blur(
    image: np.ndarray, *, seed: int, zoom_start: float, zoom_stop: float, zoom_step: float
) -> np.ndarray:
    """Average of the image and its centre zooms by ``np.arange(zoom_start, zoom_stop, zoom_step)``
    (numpy's float arange, so 1..1.11 by .01 has 12 factors, as in the reference). Not random."""
    del seed
    x = _float01(image, np.float32)
    zooms = np.arange(zoom_start, zoom_stop, zoom_step)
    acc = np.zeros_like(x)
    for z in zooms:
        acc += K.clipped_zoom(x, float(z))
    return K.to_uint8((x + acc) / (len(zooms) + 1))


# ---------------------------------------------------------------- weather


@OPS.register("c_snow", random=True, **_META)
def snow(
    image: np.ndarray,
    *,
    seed: int,
    loc: float,
    scale: float,
    zoom: float,
    threshold: float,
    blur_radius: float,
    blur_sigma: float,
    blend: float,
    angle: tuple[float, float],
) -> np.ndarray:
    """Snow: N(loc, scale²) flakes, zoomed ×``zoom``, kept above ``threshold``, motion-blurred
    (ImageMagick kernel, direction U(angle)); the scene is whitened (``blend`` of the image, the rest
    max(image, 1.5·grey + 0.5)) and the flake layer is added twice (as is and rotated 180°).
    Equals the original run with ImageMagick's motion blur (re-implemented here in numpy)."""
    import cv2

    rng = np.random.RandomState(seed)
    x = _float01(image, np.float32)
    h, w = x.shape[:2]
    flakes = rng.normal(size=(h, w), loc=loc, scale=scale)
    flakes = K.clipped_zoom(flakes[..., None], zoom)[..., 0]
    flakes[flakes < threshold] = 0
    flakes_u8 = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    theta = rng.uniform(angle[0], angle[1])
    streaks = K.motion_blur_u8(flakes_u8, radius=blur_radius, sigma=blur_sigma, angle_deg=theta)
    layer = (streaks / 255.0)[..., None]
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return K.to_uint8(x + layer + np.rot90(layer, k=2))


def frost_source() -> str:
    """Which frost textures :func:`frost` blends: ``"photographs"`` (the reference's, from the
    installed ``imagecorruptions`` package) or ``"procedural"`` (the stand-ins, when it is absent).
    Part of the set's spec hash, so every record says which frost made it."""
    return "photographs" if _frost_photographs() is not None else "procedural"


@cache
def _frost_photographs() -> tuple[np.ndarray, ...] | None:
    """The reference's frost photographs frost1..frost5 (uint8 HWC RGB, decoded by OpenCV as the
    reference's ``cv2.imread``), read from the installed ``imagecorruptions`` package data; None
    (with one warning per process) when the package is not installed.

    The folder is found with ``importlib.util.find_spec``, which locates the package without
    running its ``__init__`` (imagecorruptions 1.1.2 imports ``pkg_resources`` there, which
    setuptools no longer ships); the files are read as ``importlib.resources`` would.
    """
    import importlib.util
    import warnings
    from pathlib import Path

    import cv2

    spec = importlib.util.find_spec("imagecorruptions")
    folder = Path(next(iter(spec.submodule_search_locations or []), "")) / "frost" if spec else None
    names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
    if folder is None or not all((folder / n).is_file() for n in names):
        warnings.warn(
            "frost: `imagecorruptions` is not installed, so procedural textures stand in for the "
            "reference's frost photographs (numbers not comparable; pip install 'robusteval[imagenet-c]')",
            stacklevel=3,
        )
        return None
    out = []
    for n in names:
        bgr = cv2.imdecode(np.frombuffer((folder / n).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        rgb.setflags(write=False)
        out.append(rgb)
    return tuple(out)


@OPS.register("c_frost", random=True, variant=frost_source, legacy_variant="procedural", **_META)
def frost(image: np.ndarray, *, seed: int, image_weight: float, frost_weight: float) -> np.ndarray:
    """``image_weight·image + frost_weight·crop`` (0..255, clipped, truncated to uint8).

    As the reference: draw the texture index from the first five (``randint(5)``; frost6 is never
    used), then the crop origin ``top = randint(0, H_tex - h)``, ``left = randint(0, W_tex - w)``
    of an ``h × w`` crop, unresized. The textures are the reference's photographs when the
    ``imagenet-c`` extra (``imagecorruptions``) is installed, else the procedural stand-ins of
    ``imagenet_c_frost`` (one warning; :func:`frost_source` goes into the spec hash). The reference
    only handles 224 images (every texture is larger); for an image at least as large as a
    texture, that texture is first enlarged bicubically to just exceed it (robusteval's rule).
    """
    rng = np.random.RandomState(seed)
    h, w = image.shape[:2]
    photos = _frost_photographs()
    if photos is not None:
        tex = photos[int(rng.randint(len(photos)))]
    else:
        from robusteval.corrupt.reference.imagenet_c_frost import FROST_STYLES, frost_texture

        tex = frost_texture(int(rng.randint(len(FROST_STYLES))))
    if tex.shape[0] <= h or tex.shape[1] <= w:  # images larger than the textures: enlarge them
        from PIL import Image

        f = max((h + 1) / tex.shape[0], (w + 1) / tex.shape[1])
        size = (int(np.ceil(tex.shape[1] * f)), int(np.ceil(tex.shape[0] * f)))
        tex = np.asarray(Image.fromarray(tex).resize(size, Image.BICUBIC))
    top, left = rng.randint(0, tex.shape[0] - h), rng.randint(0, tex.shape[1] - w)
    crop = tex[top : top + h, left : left + w].astype(np.float64)
    out = image_weight * image.astype(np.float64) + frost_weight * crop
    return np.clip(out, 0, 255).astype(np.uint8)


@OPS.register("c_fog", random=True, **_META)
def fog(image: np.ndarray, *, seed: int, strength: float, wibble_decay: float) -> np.ndarray:
    """Add ``strength`` × a diamond-square plasma (roughness ``wibble_decay``), then rescale by
    max/(max+strength) so the brightest input keeps its value."""
    rng = np.random.RandomState(seed)
    x = _float01(image)
    h, w = x.shape[:2]
    mapsize = max(256, 1 << int(np.ceil(np.log2(max(h, w)))))
    peak = x.max()
    x = x + strength * K.plasma_fractal(rng, mapsize=mapsize, wibble_decay=wibble_decay)[:h, :w, None]
    return K.to_uint8(x * peak / (peak + strength))


@OPS.register("c_brightness", random=False, **_META)
def brightness(image: np.ndarray, *, seed: int, delta: float) -> np.ndarray:
    """HSV value + ``delta`` (clipped to 1), hue and saturation kept. Not random."""
    del seed
    hsv = K.rgb_to_hsv(_float01(image))
    hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0, 1)
    return K.to_uint8(K.hsv_to_rgb(hsv))


@OPS.register("c_spatter", random=True, **_META)
def spatter(
    image: np.ndarray,
    *,
    seed: int,
    kind: str,
    loc: float,
    scale: float,
    sigma: float,
    threshold: float,
    intensity: float = 0.0,
    mud_sigma: float = 0.0,
) -> np.ndarray:
    """Spatter: a blurred N(loc, scale²) field kept above ``threshold`` becomes either ``water``
    (pale turquoise drops shaded through OpenCV edge/distance maps, scaled by ``intensity``) or
    ``mud`` (opaque brown blobs: the mask blurred by ``mud_sigma`` and kept above 0.8)."""
    import cv2

    rng = np.random.RandomState(seed)
    x = _float01(image, np.float32)
    liquid = rng.normal(size=x.shape[:2], loc=loc, scale=scale)
    liquid = _gaussian(liquid, sigma)
    liquid[liquid < threshold] = 0
    if kind == "water":
        liquid_u8 = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid_u8, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)
        dist = cv2.filter2D(dist, cv2.CV_8U, emboss)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = liquid_u8 * dist
        m = m / m.max() * intensity if m.max() > 0 else m
        water = np.array([175, 238, 238], dtype=np.float32) / 255.0
        return K.to_uint8(x + m[..., None] * water)
    if kind == "mud":
        mask = _gaussian((liquid > threshold).astype(np.float32), mud_sigma)
        mask[mask < 0.8] = 0
        mud = np.array([63, 42, 20], dtype=np.float32) / 255.0
        return K.to_uint8(x * (1 - mask[..., None]) + mud * mask[..., None])
    raise ValueError(f"spatter kind must be 'water' or 'mud', not {kind!r}")


# ---------------------------------------------------------------- digital


@OPS.register("c_contrast", random=False, **_META)
def contrast(image: np.ndarray, *, seed: int, factor: float) -> np.ndarray:
    """Scale each channel's deviation from its image mean by ``factor``. Not random."""
    del seed
    x = _float01(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return K.to_uint8((x - means) * factor + means)


@OPS.register("c_saturate", random=False, **_META)
def saturate(image: np.ndarray, *, seed: int, factor: float, shift: float) -> np.ndarray:
    """HSV saturation → clip(S·``factor`` + ``shift``, 0, 1), hue and value kept. Not random."""
    del seed
    hsv = K.rgb_to_hsv(_float01(image))
    hsv[..., 1] = np.clip(hsv[..., 1] * factor + shift, 0, 1)
    return K.to_uint8(K.hsv_to_rgb(hsv))


@OPS.register("c_elastic_transform", random=True, **_META)
def elastic_transform(
    image: np.ndarray, *, seed: int, alpha: float, sigma: float, affine: float, scale_px: float
) -> np.ndarray:
    """Random affine (corner points of a centred square moved by U(±affine·scale_px)), then a
    smooth displacement field: uniform noise blurred by σ = sigma·scale_px (reflect, 3σ) times
    alpha·scale_px, sampled bilinearly. ``scale_px`` is 244 in the reference (its comment: "244
    should have been 224, but ultimately nothing is incorrect"). This is the original script's
    formula; imagecorruptions 1.1.2 uses a different one (accuracy differs by about 20 points)."""
    import cv2
    from scipy.ndimage import map_coordinates

    rng = np.random.RandomState(seed)
    a_px, s_px, aff_px = alpha * scale_px, sigma * scale_px, affine * scale_px
    x = _float01(image, np.float32)
    h, w = x.shape[:2]
    centre = np.float32((h, w)) // 2
    half = min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-aff_px, aff_px, size=src.shape).astype(np.float32)
    warp = cv2.getAffineTransform(src, dst)
    x = cv2.warpAffine(x, warp, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    dx = (_gaussian(rng.uniform(-1, 1, size=(h, w)), s_px, mode="reflect", truncate=3) * a_px).astype(
        np.float32
    )
    dy = (_gaussian(rng.uniform(-1, 1, size=(h, w)), s_px, mode="reflect", truncate=3) * a_px).astype(
        np.float32
    )
    yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(x.shape[2]), indexing="ij")
    coords = np.stack([(yy + dy[..., None]).ravel(), (xx + dx[..., None]).ravel(), zz.ravel()])
    out = map_coordinates(x, coords, order=1, mode="reflect").reshape(x.shape)
    return K.to_uint8(out)


@OPS.register("c_pixelate", random=False, **_META)
def pixelate(image: np.ndarray, *, seed: int, factor: float) -> np.ndarray:
    """Box-downsample to ``int(size·factor)`` and box-upsample back (PIL). Not random."""
    from PIL import Image

    del seed
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((int(w * factor), int(h * factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), dtype=np.uint8)


@OPS.register("c_jpeg_compression", random=False, **_META)
def jpeg_compression(image: np.ndarray, *, seed: int, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (PIL/libjpeg defaults, 4:2:0) and decode. Not random."""
    from PIL import Image

    del seed
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
