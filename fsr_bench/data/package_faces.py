"""Faces that ship inside installed packages: the offline, zero-download quickstart dataset.

* ``astronaut`` — Eileen Collins, NASA portrait (public domain), bundled with scikit-image.
* ``grace_hopper`` — Grace Hopper, US Navy portrait (public domain), bundled with matplotlib.

Each is cropped to a square around the face (box measured once with MTCNN and fixed here, so the
dataset does not depend on a detector) and downscaled with MATLAB bicubic to ``hr_size`` — never
upscaled: the crops are 200 and 400 px, so ``hr_size`` must be at most 200.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# name -> (top, left, side) of the square face crop in the original image
_CROPS = {"astronaut": (17, 124, 200), "grace_hopper": (30, 65, 400)}


def _load(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as f:
            return np.asarray(f.convert("RGB"))
    raise KeyError(name)


@dataclass
class PackageFaces(torch.utils.data.Dataset):
    hr_size: int = 128
    names: tuple[str, ...] = ("astronaut", "grace_hopper")

    def __post_init__(self):
        unknown = [n for n in self.names if n not in _CROPS]
        if unknown:
            raise ValueError(f"package_faces: unknown face(s) {unknown}; available: {sorted(_CROPS)}")
        smallest = min(_CROPS[n][2] for n in self.names)
        if self.hr_size > smallest:
            raise ValueError(
                f"package_faces: hr_size {self.hr_size} would upscale the {smallest}px crop; use <= {smallest}"
            )
        self.names = tuple(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        from fsr_bench.data.resize import imresize

        name = self.names[index]
        top, left, side = _CROPS[name]
        img = torch.from_numpy(_load(name)[top : top + side, left : left + side].copy())
        img = img.permute(2, 0, 1).float() / 255.0  # (3, side, side)
        hr = imresize(img, size=(self.hr_size, self.hr_size)).clamp(0, 1)
        # HR is what gets scored: store it exactly as an 8-bit image would be
        hr = torch.floor(hr * 255 + 0.5) / 255
        return {"hr": hr, "name": name, "index": index}

    def describe(self) -> dict:
        return {"type": "package_faces", "names": list(self.names), "hr_size": self.hr_size,
                "n_images": len(self), "source": "scikit-image astronaut, matplotlib grace_hopper",
                "hr_resize": "matlab_bicubic, quantised to 8 bits"}
