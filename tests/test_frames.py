"""`fsr-bench sr --faces`: tracker, paste-back, crop geometry and video I/O on synthetic data with
expectations written out by hand; detection, SR and paste-back on frames and a clip composed from
the shared real faces (skipped without ../shared)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.data.io import read_image, write_image
from fsr_bench.data.resize import imresize
from fsr_bench.data.video import VideoError, probe_video, read_frames, write_video
from fsr_bench.face.detect import Detector, Faces
from fsr_bench.face.paste import feather_mask, paste_face
from fsr_bench.face.tracking import IoUTracker, box_iou
from fsr_bench.run.frames import FrameOptions, crop_square, detect_faces

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


# -- tracker (synthetic) ---------------------------------------------------------------------------
def test_box_iou_matches_hand_computed_areas():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[1, 1, 3, 3], [10, 10, 11, 11]], float)
    # [0,2]² ∩ [1,3]² = [1,2]²: area 1; union 4 + 4 - 1 = 7. [0,1]² touches [1,3]² at a corner: 0
    expected = np.array([[1 / 7, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(box_iou(a, b), expected)


def test_tracker_keeps_ids_of_moving_faces_and_opens_new_ones():
    tracker = IoUTracker(min_iou=0.3, max_age=1)
    left, right = np.array([10, 10, 50, 50], float), np.array([200, 10, 240, 50], float)
    step = np.array([3, 0, 3, 0], float)  # 3 px per frame: IoU of consecutive boxes = 37·40 / (43·40) > 0.3
    first = tracker.update(np.stack([left, right]))
    assert first == [0, 1]
    for t in range(1, 5):  # detections come in either order; ids follow the boxes, not the order
        boxes = np.stack([right + t * step, left + t * step])
        assert tracker.update(boxes) == [1, 0]
    # a third face appears: a new id; a face far from every track: a new id, never a reused one
    assert tracker.update(np.stack([left + 5 * step, right + 5 * step, [400, 300, 440, 340]])) == [0, 1, 2]


def test_tracker_closes_a_track_after_max_age_missed_updates():
    tracker = IoUTracker(min_iou=0.3, max_age=1)
    box = np.array([[0, 0, 20, 20]], float)
    assert tracker.update(box) == [0]
    assert tracker.update(np.zeros((0, 4))) == []  # missed once: still alive (max_age 1)
    assert tracker.update(box) == [0]
    tracker.update(np.zeros((0, 4)))
    tracker.update(np.zeros((0, 4)))  # missed twice in a row: closed
    assert tracker.update(box) == [1]


def test_tracker_prefers_the_higher_overlap():
    tracker = IoUTracker(min_iou=0.1, max_age=0)
    tracker.update(np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float))
    # one detection overlapping track 0 by 6/14 and track 1 by 10/10: it continues track 1,
    # and track 0, unmatched with max_age 0, is closed
    assert tracker.update(np.array([[6, 0, 16, 10]], float)) == [1]


# -- paste-back (synthetic) ------------------------------------------------------------------------
def test_feather_mask_is_the_written_out_ramp():
    # n = 6, feather = 2: pixel centres 0.5, 1.5, 2.5 from the nearer edge -> 0.25, 0.75, 1 (clipped)
    ramp = torch.tensor([0.25, 0.75, 1.0, 1.0, 0.75, 0.25])
    m = feather_mask(6, 6, 2.0)
    torch.testing.assert_close(m, torch.minimum(ramp[:, None], ramp[None, :]))
    assert torch.equal(feather_mask(3, 5, 0.0), torch.ones(3, 5))


def test_paste_face_changes_only_the_square_and_blends_by_the_mask():
    frame = torch.full((3, 20, 30), 0.2)
    face = torch.full((3, 6, 6), 1.0)
    out = paste_face(frame.clone(), face, x0=10, y0=4, feather=2.0)
    outside = torch.ones(20, 30, dtype=torch.bool)
    outside[4:10, 10:16] = False
    assert torch.equal(out[:, outside], frame[:, outside])
    # corner pixel: weight min(0.25, 0.25) -> 0.25·1 + 0.75·0.2 = 0.4; centre: the face, 1.0
    torch.testing.assert_close(out[:, 4, 10], torch.full((3,), 0.4))
    torch.testing.assert_close(out[:, 6, 12], torch.full((3,), 1.0))
    with pytest.raises(ValueError, match="does not fit"):
        paste_face(frame.clone(), face, x0=27, y0=0, feather=0)


def test_crop_square_is_centred_rounded_and_kept_inside():
    # box 40x30 centred at (100, 50): longer side 40 · (1 + 2·0.25) = 60 -> rounded up to 64
    assert crop_square((80, 35, 120, 65), 200, 300, 0.25, 8) == (68, 18, 64)
    # the same box near the top-left corner: shifted to start at 0
    assert crop_square((0, 0, 40, 30), 200, 300, 0.25, 8) == (0, 0, 64)
    # at the bottom-right: ends at the frame's edge
    assert crop_square((270, 180, 300, 200), 200, 300, 0.25, 8) == (300 - 48, 200 - 48, 48)
    # larger than the frame: the largest multiple of 8 that fits (the 50-px frame -> 48)
    assert crop_square((0, 0, 50, 50), 50, 80, 0.5, 8) == (1, 1, 48)


class _BrightSquares(Detector):
    """A stand-in detector with a known answer: the bounding box of the pixels brighter than 0.5."""

    name = "bright"

    def describe(self):
        return {}

    def detect(self, batch):
        out = []
        for img in batch:
            ys, xs = torch.nonzero(img.mean(0) > 0.5, as_tuple=True)
            if len(xs) == 0:
                out.append(Faces.none())
                continue
            box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)
            pts = np.tile(box[:, None, :2], (1, 5, 1))
            out.append(Faces(box, np.ones(1), pts))
        return out


def test_upsample_before_detect_maps_boxes_back_to_native_pixels():
    frame = torch.zeros(1, 3, 60, 80)
    frame[:, :, 20:36, 30:46] = 1.0  # a 16-px square at x 30..46, y 20..36
    native = detect_faces(_BrightSquares(), frame, FrameOptions(min_face=1))[0]
    up = detect_faces(_BrightSquares(), frame, FrameOptions(min_face=1, upsample=2.0))[0]
    np.testing.assert_allclose(native.boxes, [[30, 20, 46, 36]])
    np.testing.assert_allclose(up.boxes, [[30, 20, 46, 36]], atol=0.5)  # bicubic's edge: within half a pixel
    assert len(detect_faces(_BrightSquares(), frame, FrameOptions(min_face=17))[0]) == 0  # below min_face


# -- video I/O (synthetic) -------------------------------------------------------------------------
def test_video_round_trip_counts_frames_and_strides(tmp_path):
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (3, 32, 48), generator=g).float() / 255 for _ in range(7)]
    assert write_video(tmp_path / "c.mkv", frames, fps=12.5) == 7
    back = list(read_frames(tmp_path / "c.mkv"))
    assert [f.index for f in back] == list(range(7))
    assert all(torch.equal(b.image, f) for b, f in zip(back, frames))  # FFV1 on RGB: bit-exact
    np.testing.assert_allclose([f.time for f in back], np.arange(7) / 12.5, atol=1e-3)
    assert [f.index for f in read_frames(tmp_path / "c.mkv", stride=3)] == [0, 3, 6]
    assert write_video(tmp_path / "c.mp4", frames, fps=10) == 7
    info = probe_video(tmp_path / "c.mp4")
    assert (info.width, info.height, info.codec) == (48, 32, "h264")
    assert len(list(read_frames(tmp_path / "c.mp4"))) == 7
    with pytest.raises(VideoError, match="odd"):
        write_video(tmp_path / "odd.mp4", [torch.zeros(3, 31, 48)], fps=10)
    assert not (tmp_path / "odd.mp4").exists()


def test_cli_errors_for_unreadable_and_empty_videos(tmp_path):
    import av

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w") as c:  # a container with a video stream and no frame in it
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    for path, message in ((bad, "cannot read video"), (empty, "no decodable frame"), (broken, "broken.png")):
        result = runner.invoke(app, ["sr", str(path), "--faces", "-m", "bicubic_x4", "-o", str(tmp_path / "o")])
        assert result.exit_code != 0
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = [x for x in result.output.splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.output


def test_cli_frame_without_faces_writes_an_empty_record(tmp_path):
    write_image(torch.full((3, 64, 96), 0.5), tmp_path / "blank.png")
    result = runner.invoke(app, ["sr", str(tmp_path / "blank.png"), "--faces", "-m", "bicubic_x4",
                                 "--precision", "fp32", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "no face found in 1 of 1 frame" in result.output
    record = json.loads((tmp_path / "o/blank_bicubic_x4/frames/000000.json").read_text())
    assert record["n_faces"] == 0 and record["faces"] == []
    assert record["model"]["name"] == "bicubic_x4" and record["precision"].startswith("fp32")


# -- real faces --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def val_faces(shared_dir) -> list[Path]:
    """Four faces256 validation identities (one image each)."""
    ids = (shared_dir / "data/splits/faces256_val.txt").read_text().split()[:4]
    root = shared_dir / "data/faces256"
    return [sorted((root / i).glob("*.jpg"))[0] for i in ids]


def _background(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.linspace(0.25, 0.6, w).expand(3, h, w) + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def _reference_box(detector, face: torch.Tensor) -> np.ndarray:
    """The face's box found by the detector on the face image alone, at its native 256 px, in [0, 1]
    units of the image side: where the face must be found again once the image is pasted, resized."""
    found = detector.detect(face[None])[0]
    k = int(np.argmax((found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])))
    return found.boxes[k] / face.shape[-1]


def test_composed_frame_faces_are_found_where_they_were_pasted(tmp_path, val_faces):
    from fsr_bench.face import create_detector
    from fsr_bench.models.pretrained import get_pretrained

    places = [(40, 60, 128), (250, 80, 96), (420, 150, 64), (540, 40, 48)]  # x, y, side
    frame = _background(360, 640)
    expected = []
    detector = create_detector("mtcnn", min_face_size=20)
    for path, (x, y, s) in zip(val_faces, places):
        face = read_image(path)
        expected.append(_reference_box(detector, face) * s + np.array([x, y, x, y]))
        frame[:, y : y + s, x : x + s] = imresize(face, size=(s, s)).clamp(0, 1)
    write_image(frame, tmp_path / "frame.png")

    result = runner.invoke(app, ["sr", str(tmp_path / "frame.png"), "--faces", "--precision", "fp32",
                                 "--no-channels-last", "--paste-scale", "1", "-o", str(tmp_path / "o"),
                                 "-m", "tanet_s_x4", "--pretrained"])  # by name: the default may change
    assert result.exit_code == 0, result.output
    out = tmp_path / "o/frame_tanet_s_x4"
    record = json.loads((out / "frames/000000.json").read_text())
    assert record["n_faces"] == len(places)
    boxes = np.array([f["box_xyxy"] for f in record["faces"]])
    iou = box_iou(boxes, np.array(expected))
    assert (iou.max(axis=1) > 0.7).all() and len(set(iou.argmax(axis=1))) == len(places), iou.round(2)
    for f, k in zip(record["faces"], iou.argmax(axis=1)):
        x, y, s = places[k]
        bx1, by1, bx2, by2 = f["box_xyxy"]
        assert x - 2 <= bx1 < bx2 <= x + s + 2 and y - 2 <= by1 < by2 <= y + s + 2  # inside its paste
        left, right = np.array(f["landmarks_xy"][0]), np.array(f["landmarks_xy"][1])
        assert f["inter_eye_px"] == pytest.approx(float(np.linalg.norm(right - left)))
        sr = read_image(out / f["sr_file"])
        assert list(sr.shape[1:]) == [4 * f["crop_xywh"][3], 4 * f["crop_xywh"][2]]
    assert record["model"]["checkpoint_sha256"] == get_pretrained("tanet_s_x4").weights.sha256
    assert record["precision"] == "fp32, NCHW" and record["detector"]["name"] == "mtcnn"

    pasted = read_image(out / "frame_pasted.png")
    source = read_image(tmp_path / "frame.png")
    inside = torch.zeros(source.shape[1:], dtype=torch.bool)
    for f in record["faces"]:
        x0, y0, w, h = f["paste_xywh"]
        inside[y0 : y0 + h, x0 : x0 + w] = True
    assert torch.equal(pasted[:, ~inside], source[:, ~inside])
    assert (pasted[:, inside] - source[:, inside]).abs().max() > 0.05


def test_clip_tracks_two_faces_and_pastes_only_inside_them(tmp_path, val_faces):
    n_frames, h, w = 6, 240, 320
    faces = [imresize(read_image(p), size=(s, s)).clamp(0, 1) for p, s in zip(val_faces[:2], (88, 64))]
    starts, velocity = [(20, 60), (200, 100)], [(6, 2), (-4, 1)]
    frames = []
    for t in range(n_frames):
        frame = _background(h, w, seed=t)
        for face, (x, y), (vx, vy) in zip(faces, starts, velocity):
            s = face.shape[-1]
            frame[:, y + vy * t : y + vy * t + s, x + vx * t : x + vx * t + s] = face
        frames.append(frame)
    clip = tmp_path / "clip.mkv"
    write_video(clip, frames, fps=10)

    result = runner.invoke(app, ["sr", str(clip), "--faces", "-m", "bicubic_x4", "--paste-scale", "1",
                                 "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o/clip_bicubic_x4"
    records = [json.loads(p.read_text()) for p in sorted((out / "frames").glob("*.json"))]
    assert [r["frame_index"] for r in records] == list(range(n_frames))
    # which track each pasted face belongs to: the face whose pasted square holds the box centre
    tracks: dict[int, set[int]] = {0: set(), 1: set()}
    for t, r in enumerate(records):
        assert r["n_faces"] == 2
        for f in r["faces"]:
            cx, cy = (f["box_xyxy"][0] + f["box_xyxy"][2]) / 2, (f["box_xyxy"][1] + f["box_xyxy"][3]) / 2
            owner = [k for k, ((x, y), (vx, vy)) in enumerate(zip(starts, velocity))
                     if x + vx * t <= cx < x + vx * t + faces[k].shape[-1]
                     and y + vy * t <= cy < y + vy * t + faces[k].shape[-1]]
            assert len(owner) == 1
            tracks[owner[0]].add(f["track_id"])
    assert all(len(ids) == 1 for ids in tracks.values()) and tracks[0] != tracks[1], tracks

    pasted = list(read_frames(out / "clip_pasted.mkv"))
    assert len(pasted) == n_frames
    decoded = list(read_frames(clip))  # the 8-bit frames the pipeline saw
    for r, src, got in zip(records, decoded, pasted):
        inside = torch.zeros(h, w, dtype=torch.bool)
        for f in r["faces"]:
            x0, y0, pw, ph = f["paste_xywh"]
            inside[y0 : y0 + ph, x0 : x0 + pw] = True
        source = src.image
        assert torch.equal(got.image[:, ~inside], source[:, ~inside])
        assert (got.image[:, inside] - source[:, inside]).abs().max() > 0


def _recognition_run(folder: Path, thresholds: dict[str, float]) -> Path:
    """A recognition results.json with a calibration block (schema-valid, numbers chosen here)."""
    from fsr_bench.results import RecognitionRow, RunResult, write_run

    run = RunResult(kind="recognition", protocol_name="synthetic", conventions={
        "calibration": {"per_recogniser": {"mobilefacenet": {"thresholds": thresholds}}}},
        models=[RecognitionRow(label="HR", name="hr", metrics={"matching_accuracy": 1.0, "detection_rate": 1.0})])
    folder.mkdir(parents=True)
    write_run(folder, run)
    return folder


def test_watchlist_names_each_pasted_face(tmp_path, val_faces, shared_dir):
    root = shared_dir / "data/faces256"
    ids = [p.parent.name for p in val_faces]
    watch = tmp_path / "watch"
    for i in ids:  # enrol each identity with images other than the one pasted into the frame
        (watch / i).mkdir(parents=True)
        for f in sorted((root / i).glob("*.jpg"))[1:3]:
            (watch / i / f.name).symlink_to(f)
    frame = _background(200, 400)
    places = [(30, 40, 64), (250, 70, 48)]
    for path, (x, y, s) in zip(val_faces, places):
        frame[:, y : y + s, x : x + s] = imresize(read_image(path), size=(s, s)).clamp(0, 1)
    write_image(frame, tmp_path / "frame.png")
    run = _recognition_run(tmp_path / "run", {"0.01": 0.25, "0.001": 0.3})

    args = ["sr", str(tmp_path / "frame.png"), "--faces", "--precision", "fp32", "--no-paste",
            "--watchlist", str(watch), "-o", str(tmp_path / "o"), "-m", "tanet_s_x4", "--pretrained"]
    result = runner.invoke(app, args + ["--watchlist-threshold", str(run)])
    assert result.exit_code == 0, result.output
    answers = json.loads((tmp_path / "o/frame_tanet_s_x4/watchlist.json").read_text())
    record = json.loads((tmp_path / "o/frame_tanet_s_x4/frames/000000.json").read_text())
    assert answers["threshold"] == 0.3 and answers["threshold_source"]["kind"] == "calibrated"
    assert answers["identities"] == len(ids) and len(answers["tracks"]) == len(places)
    for track, face in zip(answers["tracks"], record["faces"]):
        x1 = face["box_xyxy"][0]
        truth = ids[0] if x1 < 200 else ids[1]  # which paste the face came from
        assert track["best"] == truth, track
        scores = [r["score"] for r in track["rank5"]]
        assert len(scores) == min(5, len(ids)) and scores == sorted(scores, reverse=True)
        assert track["score"] == scores[0] and track["match"] == (scores[0] >= 0.3)

    missing = runner.invoke(app, args + ["--watchlist-threshold", str(run), "--watchlist-far", "1e-4"])
    assert missing.exit_code != 0 and "has no FAR 0.0001" in missing.output
    unstated = runner.invoke(app, args)
    assert unstated.exit_code != 0 and "--watchlist needs --watchlist-threshold" in unstated.output


def test_list_detectors_names_the_built_ins():
    result = runner.invoke(app, ["list", "detectors"])
    assert result.exit_code == 0 and {"mtcnn", "scrfd"} <= set(result.output.split())


@pytest.fixture()
def bright_detector():
    """`_BrightSquares` registered as a plug-in would be, removed afterwards."""
    from fsr_bench.face import DETECTORS, register_detector

    @register_detector(name="bright_squares")
    def build(weights=None, device="cpu"):
        return _BrightSquares()

    yield "bright_squares"
    DETECTORS.unregister("bright_squares")


def test_cli_with_a_plug_in_detector_crops_and_pastes_where_it_says(tmp_path, bright_detector):
    frame = torch.full((3, 120, 200), 0.2)
    frame[:, 30:70, 50:90] = 0.9  # the "face": 40 px at (50, 30)
    write_image(frame, tmp_path / "f.png")
    result = runner.invoke(app, ["sr", str(tmp_path / "f.png"), "--faces", "--detector", bright_detector,
                                 "-m", "bicubic_x4", "--upsample", "2", "--paste-scale", "2",
                                 "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o/f_bicubic_x4"
    face = json.loads((out / "frames/000000.json").read_text())["faces"][0]
    np.testing.assert_allclose(face["box_xyxy"], [50, 30, 90, 70], atol=0.5)
    # 40 · 1.5 = 60 -> 64 px square centred on (70, 50): x0 = 70 - 32 = 38, y0 = 50 - 32 = 18
    assert face["crop_xywh"] == [38, 18, 64, 64]
    assert face["sr_size_wh"] == [256, 256] and face["paste_xywh"] == [76, 36, 128, 128]
    assert read_image(out / "f_pasted.png").shape == (3, 240, 400)
    assert json.loads((out / "frames/000000.json").read_text())["detector"]["name"] == bright_detector


def test_small_real_faces_upsampled_before_detection_land_on_their_native_places(val_faces):
    from fsr_bench.run.frames import build_detector

    places = [(20, 40, 28), (100, 40, 28), (180, 40, 28), (260, 40, 28)]  # 28-px crops: faces ≈ 15 px
    frame = _background(120, 320)
    for path, (x, y, s) in zip(val_faces, places):
        frame[:, y : y + s, x : x + s] = imresize(read_image(path), size=(s, s)).clamp(0, 1)

    def found(**kw):
        options = FrameOptions(**kw)
        return detect_faces(build_detector(options, "cpu"), frame[None], options)[0]

    assert len(found(min_face=20)) == 0  # the default minimum keeps them out
    native, up = found(min_face=12), found(min_face=10, upsample=2.0)
    assert len(native) == len(up) == len(places)
    iou = box_iou(up.boxes, native.boxes)  # the same faces found on the native frame, no upsampling
    assert (iou.max(axis=1) > 0.6).all() and len(set(iou.argmax(axis=1))) == len(places), iou.round(2)
    for (x1, y1, x2, y2), pts in zip(up.boxes, up.landmarks):
        inside = [(x, y, s) for x, y, s in places if x - 2 <= x1 < x2 <= x + s + 2 and y - 2 <= y1 < y2 <= y + s + 2]
        assert len(inside) == 1
        x, y, s = inside[0]
        assert ((pts >= [x, y]) & (pts <= [x + s, y + s])).all()  # landmarks inside the paste too


def test_cli_refuses_missing_inputs_and_misplaced_options(tmp_path):
    frame = tmp_path / "frame.png"
    write_image(torch.full((3, 32, 32), 0.5), frame)
    for args, message in (
        (["sr", str(tmp_path / "nope.mp4"), "--faces"], "no such file or folder"),
        (["sr", "--faces", "-m", "bicubic_x4"], "no input frames or videos"),
        (["sr", "--example", "-m", "bicubic_x4", "--watchlist", str(tmp_path)], "--watchlist needs --faces"),
        (["sr", str(frame), "--faces", "-m", "bicubic_x4", "--detector", "scrfd", "--detector-weights",
          str(tmp_path / "det_10g.onnx")], "SCRFD weights not found (given path"),
        (["sr", str(frame), "--faces", "-m", "bicubic_x4", "--detector", "mtcn"], "Did you mean: mtcnn"),
    ):
        result = runner.invoke(app, args + ["-o", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
        lines = [x for x in result.output.splitlines() if x.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.output
