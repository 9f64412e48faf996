"""Compare rescodec with JPEG at the same file size, through the Python API.

    python examples/compare_jpeg.py photo.png [-q 30 -q 75]
"""
import argparse
import io

import numpy as np
from PIL import Image

import rescodec
from rescodec.evaluation.metrics import psnr


def jpeg_no_larger_than(rgb: np.ndarray, nbytes: int):
    """The largest JPEG quality whose file is <= nbytes (quality 1 if none is)."""
    best = None
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=q, optimize=True)
        if buf.tell() > nbytes and best is not None:
            break
        best = (q, buf.getvalue())
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("photo")
    ap.add_argument("-q", "--quality", type=int, action="append")
    a = ap.parse_args()
    rgb = np.asarray(Image.open(a.photo).convert("RGB"))
    px = rgb.shape[0] * rgb.shape[1]
    print(f"{a.photo}: {rgb.shape[1]}x{rgb.shape[0]}")
    print(f"{'-q':>5} {'rescodec B':>10} {'bpp':>6} {'PSNR':>6} | {'JPEG q':>6} {'JPEG B':>7} {'PSNR':>6}")
    for s in a.quality or [20, 50, 75, 95]:
        data = rescodec.encode(rgb, quality=s)
        out = np.asarray(rescodec.decode(data))
        q, jpg = jpeg_no_larger_than(rgb, len(data))
        jout = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
        larger = "  (JPEG cannot go that small)" if len(jpg) > len(data) else ""
        print(f"{s:>5} {len(data):>10} {8 * len(data) / px:>6.3f} {psnr(rgb, out):>6.2f} | "
              f"{q:>6} {len(jpg):>7} {psnr(rgb, jout):>6.2f}{larger}")


if __name__ == "__main__":
    main()
