"""The TANet paper's competitors (Tables 2–4), each in its own module.

They register through the ``fsr_bench.models`` entry-point group declared in ``pyproject.toml`` —
the same mechanism any third-party plug-in uses — so nothing in ``fsr_bench`` imports them.
"""
