"""Write the UI's example images into docs/examples/ (the Classify tab shows the ones present):
the coffee photo of scikit-image (its cat, chelsea.jpg, is there already) and held-out digits
of the built-in digits data at three sizes, named digit-LABEL-HxW.png.

    .venv/bin/python tools/example_images.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "docs" / "examples"
DIGIT_SIZES = ((24, 20), (64, 48), (160, 128))


def main() -> None:
    from skimage import data

    from poolops_models.data import digits

    OUT.mkdir(parents=True, exist_ok=True)
    coffee = Image.fromarray(data.coffee())
    coffee.resize((300, 200), Image.BILINEAR).save(OUT / "coffee.jpg", quality=85)
    _, test_ids = digits.split()
    for k, (h, w) in enumerate(DIGIT_SIZES):
        x, y = digits.render(test_ids[k + 1: k + 2], (h, w), np.random.default_rng(k))
        path = OUT / f"digit-{int(y[0])}-{h}x{w}.png"
        Image.fromarray(np.round(x[0, 0] * 255).astype(np.uint8)).save(path)
        print(path)


if __name__ == "__main__":
    main()
