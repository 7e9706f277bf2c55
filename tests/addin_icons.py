"""The Outlook add-in's icons (static/addin/icon-<size>.png): a white phone handset on the
product's blue, drawn here without an image library so the PNGs can be made again.

    .venv/bin/python -m tests.addin_icons      # rewrites static/addin/icon-*.png

Sizes: 16, 32 and 80 for the ribbon button (Microsoft's required command icon sizes), 64 for
IconUrl and 128 for HighResolutionIconUrl. tests/test_addin_manifest.py checks that the
committed files are exactly what this draws.
"""

import math
import struct
import zlib
from pathlib import Path

SIZES = (16, 32, 64, 80, 128)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "addin"
BLUE = (0x0A, 0x5C, 0xB8)  # --brand in static/css/mss.css
WHITE = (0xFF, 0xFF, 0xFF)
SAMPLES = 4  # 4×4 samples per pixel: smooth edges at 16 px too


def _in_rounded_square(x, y, radius=0.2):
    """The background tile, in unit coordinates (0..1)."""
    dx = max(radius - x, 0, x - (1 - radius))
    dy = max(radius - y, 0, y - (1 - radius))
    return dx * dx + dy * dy <= radius * radius


def _near_segment(x, y, ax, ay, bx, by, radius):
    """Inside a capsule: within `radius` of the segment a–b."""
    vx, vy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy)))
    return math.hypot(x - (ax + t * vx), y - (ay + t * vy)) <= radius


def _in_handset(x, y):
    """A handset: a thick arc bulging to the lower left, ending in wider ear and mouth pads
    that carry on along the arc's tangent."""
    cx, cy, inner, outer = 0.57, 0.43, 0.19, 0.31
    start, end = 75, 195  # degrees; y grows downwards, so 90 is straight down
    dx, dy = x - cx, y - cy
    angle = math.degrees(math.atan2(dy, dx)) % 360
    if inner <= math.hypot(dx, dy) <= outer and start <= angle <= end:
        return True
    middle = (inner + outer) / 2
    for degrees, direction in ((start, -1), (end, 1)):
        a = math.radians(degrees)
        ax, ay = cx + middle * math.cos(a), cy + middle * math.sin(a)
        # The tangent, pointing away from the arc.
        tx, ty = -math.sin(a) * direction, math.cos(a) * direction
        if _near_segment(x, y, ax, ay, ax + 0.1 * tx, ay + 0.1 * ty, 0.09):
            return True
    return False


def pixels(size: int) -> list[list[tuple[int, int, int, int]]]:
    rows = []
    for py in range(size):
        row = []
        for px in range(size):
            tile = glyph = 0
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = (px + (sx + 0.5) / SAMPLES) / size
                    y = (py + (sy + 0.5) / SAMPLES) / size
                    if _in_rounded_square(x, y):
                        tile += 1
                        glyph += _in_handset(x, y)
            total = SAMPLES * SAMPLES
            share = glyph / tile if tile else 0
            colour = [round(b + (w - b) * share) for b, w in zip(BLUE, WHITE, strict=True)]
            row.append((*colour, round(255 * tile / total)))
        rows.append(row)
    return rows


def png(size: int) -> bytes:
    """An 8-bit RGBA PNG: signature, IHDR, one IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(
        b"\x00" + bytes(channel for pixel in row for channel in pixel) for row in pixels(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main():
    STATIC_DIR.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        (STATIC_DIR / f"icon-{size}.png").write_bytes(png(size))


if __name__ == "__main__":
    main()
