"""Every row of a protocol checked before any row runs, all problems in one error.

A bad model in row N used to surface after rows 0…N−1 had run (minutes on LFW). :func:`check_protocol`,
called by :func:`fsr_bench.run.run_protocol` before the output folder is claimed, does what each runner
would do later, for every row at once:

* ``models.N.name`` left out is read from the checkpoint (``fsr-bench train`` writes it), as ``sr -c`` does;
* every model is built on the CPU through :func:`fsr_bench.run.common.load_model` — the one loader the
  runners use, so the checks cannot drift from them: a registered name, readable weights that fit it
  (strict keys and shapes), the protocol's scale (:meth:`~fsr_bench.protocol.BaseProtocol.sr_scale`),
  no learned model without weights;
* recogniser and detector names are looked up in their registries (``onnx:<path>``: the file exists);
* every data path (roots, list files, weights) exists.

Each problem names its key (``models.2``, ``data.dataset.root``) and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fsr_bench.config_io import format_validation_error
from fsr_bench.protocol import ProtocolError

__all__ = ["check_protocol"]

#: keys whose values must name existing files or folders (outputs such as ``out_dir`` are not listed)
INPUT_PATH_KEYS = ("root", "roots", "list_file", "gallery_list", "weights")
INPUT_PATH_SUFFIXES = ("_root", "_roots", "_list", "_file", "_weights")


def check_protocol(protocol: Any) -> Any:
    """The protocol with every ``models.N.name`` filled in; a :class:`ProtocolError` listing every problem."""
    unnamed: dict[int, str] = {}
    protocol = _named(protocol, unnamed)
    problems = [unnamed.pop(-1)] if -1 in unnamed else []
    scale = protocol.sr_scale()
    from fsr_bench.run.common import load_model

    for i, spec in enumerate(getattr(protocol, "models", [])):
        if i in unnamed or not spec.name:
            problems += [unnamed[i]] if i in unnamed else []
            continue
        hint = (f"the degradation is x{scale}; use the _x{scale} variant of the model or a x{scale} checkpoint"
                if scale is not None else "")
        try:
            load_model(spec, "cpu", scale, hint)
        except ProtocolError as exc:
            problems.append(f"models.{i}: {exc}")
    problems += _registry_problems(protocol)
    problems += _path_problems(protocol.model_dump(mode="json", exclude={"models", "run"}))
    if problems:
        raise ProtocolError(f"protocol {protocol.name!r}: {len(problems)} problem(s), found before any row ran:\n  "
                            + "\n  ".join(problems))
    return protocol


def _named(protocol: Any, problems: dict[int, str]) -> Any:
    """Rows without ``name`` take the model their checkpoint names; the labels are then checked again.
    ``problems``: row index -> what is wrong (-1: the labels)."""
    from fsr_bench.models.checkpoint import CheckpointError, read_checkpoint

    models = getattr(protocol, "models", [])
    unnamed = [i for i, spec in enumerate(models) if not spec.name]
    if not unnamed:
        return protocol
    doc = protocol.model_dump(mode="python")
    for i in unnamed:
        ckpt = models[i].checkpoint
        try:
            name = read_checkpoint(ckpt).get("model")
        except CheckpointError as exc:
            problems[i] = f"models.{i}: {exc}"
            continue
        if not isinstance(name, str) or not name:
            problems[i] = (f"models.{i}: checkpoint {ckpt} does not name its model (a bare state_dict); set "
                           f"--set models.{i}.name=... (`fsr-bench list models` lists the registered names)")
            continue
        doc["models"][i]["name"] = name
    if problems:
        return protocol
    try:
        return type(protocol).model_validate(doc)
    except ValidationError as exc:  # two rows that now share a label
        problems[-1] = "; ".join(line.strip() for line in format_validation_error(exc, type(protocol), "").splitlines()[1:])
        return protocol


def _registry_problems(protocol: Any) -> list[str]:
    from fsr_bench.face import DETECTORS, ONNX_PREFIX, RECOGNISERS
    from fsr_bench.registry import RegistryError

    named: list[tuple[str, str]] = []
    recognition = getattr(protocol, "recognition", None)
    if recognition is not None:
        key = "recognition.recognisers" if recognition.recognisers else "recognition.recogniser"
        named += [(key, n) for n in recognition.names]
    identity = getattr(getattr(protocol, "metrics", None), "identity", None)
    if identity is not None:
        named.append(("metrics.identity.recogniser", identity.recogniser))
    watchlist = getattr(protocol, "watchlist", None)  # kind: footage
    if watchlist is not None:
        named.append(("watchlist.recogniser", watchlist.recogniser))
    problems = []
    for key, name in named:
        if name.startswith(ONNX_PREFIX):
            if not Path(name[len(ONNX_PREFIX):]).is_file():
                problems.append(f"{key}: {name!r}: no ONNX file {name[len(ONNX_PREFIX):]!r}")
            continue
        try:
            RECOGNISERS.get(name)
        except RegistryError as exc:
            problems.append(f"{key}: {exc}")
    faces = getattr(protocol, "faces", None)  # kind: footage names its detector by a string
    detectors = [("faces.detector", faces.detector)] if faces is not None else []
    for key, name in detectors + _detector_names(protocol.model_dump(mode="json", exclude={"models"})):
        try:
            DETECTORS.get(name)
        except RegistryError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _detector_names(node: Any, where: str = "") -> list[tuple[str, str]]:
    """``(dotted key, name)`` of every detector block that names a registered detector."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{where}.{k}" if where else str(k)
            if k == "detector" and isinstance(v, dict):
                out += [(f"{key}.{f}", v[f]) for f in ("name", "type") if isinstance(v.get(f), str)]
            out += _detector_names(v, key)
    return out


def _path_problems(node: Any, where: str = "", is_path: bool = False) -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _path_problems(
            v, f"{where}.{k}" if where else str(k), k in INPUT_PATH_KEYS or str(k).endswith(INPUT_PATH_SUFFIXES))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _path_problems(v, f"{where}.{i}", is_path)]
    if is_path and isinstance(node, str) and node and not Path(node).exists():
        return [f"{where}: {node!r} does not exist (relative paths resolve against the working directory, "
                f"{Path.cwd()}); fix it with --set {where}=..."]
    return []
