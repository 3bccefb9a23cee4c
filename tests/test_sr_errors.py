"""`fsr-bench sr` on bad inputs: one `error:` line, non-zero exit, no traceback; folders go on past a
bad image; colliding names are never overwritten (issue 11 items 2, 7, 8)."""
from __future__ import annotations

import errno
import os
import pickle
import re

import pytest
import torch
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.io import write_image

runner = CliRunner()


def _errors(output: str) -> list[str]:
    """The `error:` lines (a progress bar may share the terminal line)."""
    return re.findall(r"error: [^\r\n]*", output)


def _img(path, side=8, value=0.5):
    write_image(torch.full((3, side, side), value), path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _case(name, tmp):
    """(args) for one bad input."""
    good = _img(tmp / "good.png")
    if name == "unreadable image":
        (tmp / "bad.png").write_bytes(b"not an image")
        return [str(tmp / "bad.png"), "-m", "bicubic_x4"]
    if name == "empty folder":
        (tmp / "empty").mkdir()
        return [str(tmp / "empty"), "-m", "bicubic_x4"]
    if name == "unknown model":
        return [str(good), "-m", "no_such_model"]
    if name == "missing checkpoint":
        return [str(good), "-c", str(tmp / "nope.pt")]
    if name == "truncated checkpoint":
        from fsr_bench.models import create_model
        from fsr_bench.models.checkpoint import save_checkpoint

        save_checkpoint(create_model("bicubic_x4"), tmp / "full.pt")
        data = (tmp / "full.pt").read_bytes()
        (tmp / "t.pt").write_bytes(data[: len(data) // 2])
        return [str(good), "-c", str(tmp / "t.pt")]
    if name == "foreign checkpoint":
        torch.save({"weights": torch.zeros(3)}, tmp / "f.pt")
        return [str(good), "-c", str(tmp / "f.pt")]
    if name == "refused checkpoint":
        (tmp / "evil.pt").write_bytes(pickle.dumps(_Evil()))
        return [str(good), "-c", str(tmp / "evil.pt")]
    if name == "file as -o":
        (tmp / "afile").write_text("x")
        return [str(good), "-m", "bicubic_x4", "-o", str(tmp / "afile")]
    if name == "too many pixels":
        return [str(good), "-m", "bicubic_x4", "--max-pixels", "100"]
    raise AssertionError(name)


CASES = ["unreadable image", "empty folder", "unknown model", "missing checkpoint", "truncated checkpoint",
         "foreign checkpoint", "refused checkpoint", "file as -o", "too many pixels"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line(case, tmp_path):
    args = _case(case, tmp_path)
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    result = runner.invoke(app, ["sr", *args, "--device", "cpu"])
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = _errors(result.output)
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output


def test_read_only_out_and_its_cleanup_give_one_error(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))

    src = _img(tmp_path / "a.png")
    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(os, "unlink", refuse)  # the temp file's cleanup fails too
    result = runner.invoke(app, ["sr", str(src), "-m", "bicubic_x4", "-o", str(tmp_path / "out"),
                                 "--device", "cpu"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert _errors(result.output) == [
        f"error: cannot write {tmp_path / 'out'}: Read-only file system; choose a writable --out"]


def test_folder_goes_on_past_a_bad_image_and_reports_it(tmp_path):
    src = tmp_path / "in"
    _img(src / "a.png")
    _img(src / "c.png")
    (src / "b.png").write_bytes(b"garbage")
    result = runner.invoke(app, ["sr", str(src), "-m", "bicubic_x4", "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1
    assert (tmp_path / "out" / "a_bicubic_x4.png").is_file() and (tmp_path / "out" / "c_bicubic_x4.png").is_file()
    assert "wrote 2 image(s)" in result.output
    assert _errors(result.output)[0].count("b.png") >= 1
    stop = runner.invoke(app, ["sr", str(src), "-m", "bicubic_x4", "-o", str(tmp_path / "o2"), "--on-error", "stop",
                               "--device", "cpu"])
    assert stop.exit_code == 2 and "b.png" in stop.output and not (tmp_path / "o2" / "c_bicubic_x4.png").exists()


def test_colliding_stems_are_never_overwritten(tmp_path):
    _img(tmp_path / "a" / "x.png", value=0.1)
    _img(tmp_path / "b" / "x.png", value=0.5)
    _img(tmp_path / "c" / "x.png", value=0.2)
    _img(tmp_path / "c" / "x.jpg", value=0.9)
    result = runner.invoke(app, ["sr", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
                                 str(tmp_path / "c"), "-m", "bicubic_x4", "-o", str(tmp_path / "out"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert len(written) == 4, written
    assert "wrote 4 image(s)" in result.output and "note:" in result.output


def test_tile_lifts_the_pixel_guard_and_matches_the_whole_image(tmp_path):
    """Issue 11 item 8: --tile super-resolves what --max-pixels refuses; bicubic tiles are exact."""
    import torch
    from typer.testing import CliRunner

    from fsr_bench.cli import app
    from fsr_bench.data.io import read_image, write_image

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 10, 12, generator=g), size=(40, 48), mode="bilinear")[0]
    write_image(img, tmp_path / "big.png")
    base = ["sr", str(tmp_path / "big.png"), "-m", "bicubic_x4", "--precision", "fp32"]
    refused = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "r"), "--max-pixels", "1000"])
    assert refused.exit_code != 0 and "--tile" in refused.output
    tiled = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "t"), "--max-pixels", "1000", "--tile", "16", "--overlap", "8"])
    whole = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "w")])
    assert tiled.exit_code == 0 and whole.exit_code == 0, tiled.output + whole.output
    a, b = read_image(tmp_path / "t" / "big_bicubic_x4.png"), read_image(tmp_path / "w" / "big_bicubic_x4.png")
    assert a.shape == (3, 160, 192) and (a - b).abs().max() <= 1 / 255
