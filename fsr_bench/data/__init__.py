"""Data: the one image reader/writer, resizing, degradations and folder listing.

* :mod:`fsr_bench.data.io` — ``read_image`` / ``write_image`` / ``to_uint8`` / ``list_images``;
  every image enters the toolkit through ``read_image`` as float32 RGB ``(3, H, W)`` in [0, 1].
* :mod:`fsr_bench.data.resize` — MATLAB-compatible bicubic ``imresize`` and a named-kernel
  ``resize`` dispatcher.
* :mod:`fsr_bench.data.degradations` — seeded, named HR → LR degradations with provenance.
* :mod:`fsr_bench.data.folders` — HR image-folder datasets (FFHQ / CelebA presets, list files,
  the paper's seeded 3800/100/100 split); :mod:`fsr_bench.data.package_faces` — the offline
  quickstart faces.
* :mod:`fsr_bench.data.identity_folders` and :mod:`fsr_bench.data.scface` — gallery/probe sets for
  the recognition protocol (SCface also: bob's protocols and the dev/eval calibration split);
  :mod:`fsr_bench.data.tinyface` and :mod:`fsr_bench.data.survface` — the real low-resolution
  benchmarks TinyFace and QMUL-SurvFace (their ``.mat`` lists via :mod:`fsr_bench.data.matlists`);
  :mod:`fsr_bench.data.face_size_sweep` — per-face-size probe degradations for a sweep.

Submodules are imported explicitly (``from fsr_bench.data.io import read_image``) so that
importing one does not pull in the others' dependencies.
"""
