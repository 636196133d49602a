"""First-layer weights as image tiles, the way the notes show them: one tile per hidden
unit, each column of W1 reshaped to the input image and scaled to its own [min, max].

NumPy and zlib only: the PNG is written here (8-bit RGB, no filtering).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

MAX_TILES = 256
PAD = 1
# Known datasets whose checkpoints predate the image shape in their metadata.
SHAPES_BY_INPUT = {64: (8, 8), 3072: (3, 32, 32)}


class NoImage(ValueError):
    """The checkpoint's input is not an image, or the file cannot be read."""


def first_layer_png(path: Path) -> bytes:
    """The checkpoint's first-layer weights as a PNG grid of tiles (at most MAX_TILES)."""
    w1, shape = _read_w1(path)
    shown = min(w1.shape[1], MAX_TILES)
    return encode_png(grid([_tile(w1[:, k], shape) for k in range(shown)]))


def describe_first_layer(path: Path) -> tuple[int, int, tuple[int, ...]]:
    """(tiles shown, hidden units, image shape) of what first_layer_png would draw."""
    w1, shape = _read_w1(path)
    return min(w1.shape[1], MAX_TILES), w1.shape[1], shape


def _read_w1(path: Path) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "params/W1" not in archive.files:
                raise NoImage(f"{path.name}: no first-layer weights (params/W1)")
            w1 = archive["params/W1"]
            meta = (
                json.loads(archive["meta.json"].tobytes()) if "meta.json" in archive.files else {}
            )
    except NoImage:
        raise
    except (OSError, ValueError) as exc:  # not a zip, truncated, bad JSON
        raise NoImage(f"{path.name}: not a readable checkpoint ({exc})") from exc
    extra = meta.get("extra") or {}
    # Workers record the shape (None: not an image); older checkpoints get a guess by size.
    shape = extra["image_shape"] if "image_shape" in extra else SHAPES_BY_INPUT.get(w1.shape[0])
    if not shape or math.prod(shape) != w1.shape[0]:
        raise NoImage(f"{path.name}: the input ({w1.shape[0]} values) is not an image")
    return w1, tuple(shape)


def _tile(column: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One unit's weights as an (H, W, 3) uint8 image."""
    image = column.reshape(shape).astype(np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3):  # channels first, as CIFAR's rows are
        image = image.transpose(1, 2, 0)
    if image.ndim == 2:
        image = image[:, :, None]
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    rgb = np.broadcast_to(scaled, (*scaled.shape[:2], 3)) if scaled.shape[2] == 1 else scaled
    return (rgb * 255).round().astype(np.uint8)


def grid(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in a near-square grid, PAD pixels of white between them."""
    count = len(tiles)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = tiles[0].shape[:2]
    out = np.full(
        (rows * (height + PAD) + PAD, columns * (width + PAD) + PAD, 3), 255, dtype=np.uint8
    )
    for k, tile in enumerate(tiles):
        top = PAD + (k // columns) * (height + PAD)
        left = PAD + (k % columns) * (width + PAD)
        out[top : top + height, left : left + width] = tile
    return out


def encode_png(image: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as a PNG file."""
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
