"""Data: the one image reader/writer, resizing, degradations and folder listing.

* :mod:`fsr_bench.data.io` — ``read_image`` / ``write_image`` / ``to_uint8`` / ``list_images``;
  every image enters the toolkit through ``read_image`` as float32 RGB ``(3, H, W)`` in [0, 1].
* :mod:`fsr_bench.data.resize` — MATLAB-compatible bicubic ``imresize`` and a named-kernel
  ``resize`` dispatcher.
* :mod:`fsr_bench.data.degradations` — seeded, named HR → LR degradations with provenance.

Submodules are imported explicitly (``from fsr_bench.data.io import read_image``) so that
importing one does not pull in the others' dependencies.
"""
