"""One rule for turning labels and image names into file names, shared by runners and reports."""
from __future__ import annotations

import re


def safe_filename(label: str) -> str:
    """``"TANet w/o local"`` -> ``"TANet_w_o_local"``: letters, digits, ``. _ + -`` survive."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(label)).strip("_") or "model"
