"""fsr-bench leaderboard: the same model across runs is one line, every cell equals its results.json."""
from __future__ import annotations

import csv
import json
import re

import pytest
from conftest import REPO
from typer.testing import CliRunner

from fsr_bench.cli import app
from fsr_bench.models import MODELS, create_model
from fsr_bench.models.checkpoint import save_checkpoint
from fsr_bench.protocol import load_protocol
from fsr_bench.run import run_protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = ["data.dataset.hr_size=64", "run.report=false", "run.flops=false"]


def test_leaderboard_joins_runs_and_copies_their_numbers(tmp_path):
    ckpt = save_checkpoint(create_model("tanet_x4", **MODELS.get("tanet_x4").tiny), tmp_path / "t.pt")
    models = f"models=[{{name: bicubic_x4, label: Bicubic}}, {{name: tanet_x4, label: TANet-tiny, checkpoint: {ckpt}}}]"
    runs = []
    for name, size in (("a", 64), ("b", 96)):
        proto = load_protocol(str(REPO / "protocols/quickstart.yaml"),
                              SMALL + [models, f"name={name}", f"data.dataset.hr_size={size}"])
        run_protocol(proto, tmp_path / name, progress=False, log=lambda s: None)
        runs.append(json.loads((tmp_path / name / "results.json").read_text()))
    result = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv")))
    # one line per model, both runs joined; a TANet row names its tokenisation
    assert [r["method"] for r in rows] == ["Bicubic", "TANet-tiny (patch tokens)"]
    for run, tag in zip(runs, "ab"):
        for m in run["models"]:
            line = next(r for r in rows if r["method"].startswith(m["label"]))
            assert float(line[f"{tag}:psnr"]) == pytest.approx(m["metrics"]["psnr"], abs=1e-9)
            assert run["protocol_hash"][:12] in line["sources"]
    tanet = next(r for r in rows if r["method"].startswith("TANet-tiny"))
    assert not tanet.get("budget_steps")  # a checkpoint not written by fsr-bench train has no budget: not invented
    assert "| Bicubic" in (tmp_path / "lb" / "leaderboard.md").read_text()
    bad = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "no results.json" in bad.output


def _recognition_run(path, rows):
    """A recognition run scored by two recognisers, written through the schema (as a runner writes it)."""
    from fsr_bench.results import (
        CalibratedPoint,
        OperatingPoints,
        RecogniserScores,
        RecognitionRow,
        RunResult,
        ThresholdPoint,
        write_run,
    )

    def points(tar):
        # only the TAR at the calibrated FAR 1e-3 is read; the other fields are what any run carries
        fixed = ThresholdPoint(threshold=0.4, far=0.001, n_false_accepts=1, wrong_id=0.0, n_wrong_id=0)
        cal = CalibratedPoint(target_far=1e-3, threshold=0.3, far=0.001, n_false_accepts=1, wrong_id=0.0,
                              n_wrong_id=0, tar=tar, fnmr=1 - tar)
        return OperatingPoints(n_genuine=10, n_impostor=1000, fixed=fixed, calibrated=[cal])

    path.mkdir(parents=True)
    models = []
    for label, name, sha, trained, values in rows:
        by = {rec: RecogniserScores(metrics={"matching_accuracy": v[0], "detection_rate": 1.0, "rank1": v[1],
                                             "eer": v[3]}, trained_with=rec in trained, operating_points=points(v[2]))
              for rec, v in values.items()}
        first = by["mobilefacenet"]
        models.append(RecognitionRow(label=label, name=name, checkpoint_sha256=sha, metrics=first.metrics,
                                     operating_points=first.operating_points, recogniser="mobilefacenet",
                                     by_recogniser=by))
    write_run(path, RunResult(kind="recognition", protocol_name=path.name, protocol_hash="ab" * 32, conventions={},
                              models=models))
    return path


def test_leaderboard_has_a_column_per_recogniser_and_marks_the_loss_recogniser(tmp_path):
    run = _recognition_run(tmp_path / "lfw", [
        ("Bicubic", "bicubic_x8", None, [], {"mobilefacenet": (0.41, 0.84, 0.59, 0.053),
                                             "dlib": (0.30, 0.70, 0.45, 0.081)}),
        ("TANet-S id (7530 steps)", "tanet_s_x8", "cd" * 32, ["mobilefacenet"],
         {"mobilefacenet": (0.66, 0.93, 0.80, 0.030), "dlib": (0.44, 0.78, 0.52, 0.070)}),
    ])
    result = CliRunner().invoke(app, ["leaderboard", str(run), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv"))}
    tanet = rows["TANet-S id (7530 steps)"]
    assert float(tanet["lfw:dlib:tar_cal_1e-3"]) == 0.52 and float(tanet["lfw:mobilefacenet:rank1"]) == 0.93
    assert tanet["trained_with"] == "mobilefacenet" and rows["Bicubic"]["trained_with"] == ""
    assert "lfw:matching_accuracy" not in tanet  # the fixed 0.4 is MobileFaceNet's: not per recogniser
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| TANet-S id"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    header = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| Method")).strip("|").split("|")]
    cell = dict(zip(header, cells))
    # percentages with one decimal under a named column; a figure of the loss recogniser is marked and not ranked
    assert cell["mobilefacenet TAR@cal 1e-3 (%) ↑"] == "80.0 †" and cell["dlib TAR@cal 1e-3 (%) ↑"] == "**52.0**"
    bic = dict(zip(header, [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| Bicubic"))
                            .strip("|").split("|")]))
    assert "†" not in "".join(bic.values())



def _tables(md: str) -> list[list[list[str]]]:
    """Every markdown table of a file as rows of cells (header first, rule dropped)."""
    tables, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_leaderboard_md_is_one_compact_table_per_task_with_units_directions_and_budget(tmp_path):
    run = _recognition_run(tmp_path / "lfw", [
        ("Bicubic", "bicubic_x8", None, [], {"mobilefacenet": (0.4127, 0.8413, 0.5926, 0.0529)}),
        ("SRFBN-S", "srfbn_s_x8", "cd" * 32, [], {"mobilefacenet": (0.5291, 0.9259, 0.7037, 0.0370)}),
    ])
    data = json.loads((run / "results.json").read_text())
    data["models"][1]["training"] = {"steps": 7530, "epochs": 30.0, "train_minutes": 79.46, "selected_step": 7028}
    (run / "results.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["leaderboard", str(run), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "## Recognition" in md and "## Reconstruction" not in md
    [table] = _tables(md.split("## Runs")[0])
    cell = dict(zip(table[0], table[2]))
    assert cell["Method"] == "SRFBN-S" and cell["Budget"] == "7,530 steps · 79.5 min (weights of step 7,028)"
    # percentages once, with one decimal; the unit and the direction in the heading, no raw keys
    assert cell["Matching Accuracy (%) ↑"] == "**52.9**" and cell["EER (%) ↓"] == "**3.7**"
    assert cell["TAR@cal 1e-3 (%) ↑"] == "**70.4**"
    assert dict(zip(table[0], table[1]))["Budget"] == "—"
    assert not any(":" in h for h in table[0])
    # the two TARs are told apart in one note
    assert "TAR@cal 1e-3: one threshold per recogniser, calibrated" in md and "TAR@FAR=1e-3: each row's" in md
    raw = next(csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv")))
    assert float(raw["lfw:matching_accuracy"]) == 0.4127  # the csv keeps the raw joined values



def test_budget_of_a_best_checkpoint_is_its_whole_run_and_travels_in_results(tmp_path):
    """best.pt picked at step 1004 of a 1,506-step run cost 1,506 steps: the results row says so, and the
    leaderboard rebuilds from results.json alone once the checkpoint is gone; a copy elsewhere says 1004."""
    import shutil

    from fsr_bench.models.checkpoint import training_record

    run = tmp_path / "run"
    run.mkdir()
    model = create_model("tanet_x4", **MODELS.get("tanet_x4").tiny)
    ckpt = save_checkpoint(model, run / "best.pt", step=1004, epoch=4.0, elapsed_s=600.0,
                           train_config={"precision": "bf16", "channels_last": True, "cpu_threads": 1},
                           meta={"device": "cpu"})
    (run / "summary.json").write_text(json.dumps({"steps": 1506, "epochs": 6.0, "elapsed_s": 900.0,
                                                  "stop_reason": "epochs", "best": {"step": 1004}}))
    expected = {"steps": 1506, "epochs": 6.0, "train_minutes": 15.0, "device": "cpu", "precision": "bf16",
                "channels_last": True, "cpu_threads": 1, "selected_step": 1004}
    assert training_record(ckpt) == expected
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(ckpt, copy / "best.pt")
    (copy / "summary.json").write_text(json.dumps({"steps": 3012, "best": {"step": 3012}}))  # another run's
    assert training_record(copy / "best.pt") == {**expected, "steps": 1004, "epochs": 4.0, "train_minutes": 10.0}

    models = f"models=[{{name: bicubic_x4, label: Bicubic}}, {{name: tanet_x4, label: T, checkpoint: {ckpt}}}]"
    proto = load_protocol(str(REPO / "protocols/quickstart.yaml"), SMALL + [models, "name=q"])
    run_protocol(proto, tmp_path / "q", progress=False, log=lambda s: None)
    rows = {r["label"]: r for r in json.loads((tmp_path / "q" / "results.json").read_text())["models"]}
    assert rows["T"]["training"] == expected and rows["Bicubic"]["training"] is None
    shutil.rmtree(run)
    result = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "q"), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    line = next(r for r in csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv")) if r["name"] == "tanet_x4")
    assert (float(line["budget_steps"]), float(line["budget_selected_step"])) == (1506, 1004)


COMMITTED = sorted(p.parent for p in (REPO / "reports").rglob("leaderboard.csv"))


@pytest.mark.parametrize("folder", COMMITTED, ids=[str(p.relative_to(REPO)) for p in COMMITTED])
def test_committed_leaderboard_rebuilds_from_its_committed_runs(folder, tmp_path):
    """`fsr-bench leaderboard` on the run files committed beside a table gives that table, byte for byte
    (no checkpoint, no ../shared: what a clone has)."""
    # the runs in the order the table lists them (its column order)
    names = re.findall(r"^- `([^`]+)`: ", (folder / "leaderboard.md").read_text().split("## Runs", 1)[1], re.M)
    runs = [folder / "runs" / n for n in names]
    assert names and all((r / "results.json").is_file() for r in runs), \
        f"{folder}: the run files it was built from ({names}) are not all committed under runs/"
    result = CliRunner().invoke(app, ["leaderboard", *map(str, runs), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("leaderboard.csv", "leaderboard.md"):
        assert (tmp_path / name).read_text() == (folder / name).read_text(), f"{folder / name} is stale"


@pytest.mark.parametrize("folder", COMMITTED, ids=[str(p.relative_to(REPO)) for p in COMMITTED])
def test_committed_leaderboards_are_compact(folder):
    """Every committed table: at most eight columns, no raw ``run:metric`` keys, no unformatted
    counts (``7530.0``) or long percentages (``23.2432%``)."""
    for table in _tables((folder / "leaderboard.md").read_text().split("## Runs")[0]):
        assert len(table[0]) <= 8 and not any(":" in h for h in table[0]), f"{folder}: {table[0]}"
        assert not any(re.search(r"^\d{4,}\.0$|\d\.\d{2,}%", c) for row in table for c in row), folder


# -- runs of one protocol merge; different data under one name is refused; --add re-scores ----------------------
def _quick(tmp_path, name, out, models, *sets):
    proto = load_protocol(str(REPO / "protocols/quickstart.yaml"), SMALL + ["metrics.lpips=false", "run.num_samples=0",
                                                                             models, f"name={name}", *sets])
    run_protocol(proto, tmp_path / out, progress=False, log=lambda s: None)
    return tmp_path / out


def test_runs_of_one_protocol_share_columns_whatever_their_names(tmp_path):
    ckpt = save_checkpoint(create_model("tanet_x4", **MODELS.get("tanet_x4").tiny), tmp_path / "t.pt")
    a = _quick(tmp_path, "q", "a", "models=[{name: bicubic_x4, label: Bicubic}]")
    b = _quick(tmp_path, "q", "b", f"models=[{{name: tanet_x4, label: Mine, checkpoint: {ckpt}}}]")
    c = _quick(tmp_path, "renamed", "c", "models=[{name: bicubic_x4, label: Nearest, overrides: {kernel: nearest}}]",
               "run.batch_size=1", "run.device=cpu")  # rows and settings that change no number may differ
    result = CliRunner().invoke(app, ["leaderboard", str(a), str(b), str(c), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "lb" / "leaderboard.csv"))}
    assert [k for k in next(iter(rows.values())) if ":" in k] == ["q:psnr", "q:ssim"]  # one table, not three
    for folder in (a, b, c):
        for m in json.loads((folder / "results.json").read_text())["models"]:
            line = next(r for r in rows.values() if r["method"].startswith(m["label"]))
            assert float(line["q:psnr"]) == pytest.approx(m["metrics"]["psnr"], abs=1e-9)
    assert "the same protocol as `q`" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_different_data_under_one_name_is_refused(tmp_path):
    a = _quick(tmp_path, "q", "a", "models=[{name: bicubic_x4}]")
    b = _quick(tmp_path, "q", "b", "models=[{name: bicubic_x4}]", "data.dataset.hr_size=96")
    result = CliRunner().invoke(app, ["leaderboard", str(a), str(b), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 2
    assert "two runs are named 'q' but are not the same protocol" in result.output
    assert "data.dataset.hr_size: 64 vs 96" in result.output


def test_add_rescores_a_leaderboard_with_one_more_row(tmp_path):
    """A leaderboard with the shipped TANet-S (`pretrained: true`) and floors, re-scored with one more row:
    only that row is computed; --all scores every row again and gives the committed numbers."""
    committed = _quick(tmp_path, "q", "board/runs/q", "models=[{name: bicubic_x4, label: Bicubic}, "
                       "{name: tanet_s_x4, pretrained: true, label: TANet-S}]")
    assert CliRunner().invoke(app, ["leaderboard", str(committed), "-o", str(tmp_path / "board")]).exit_code == 0
    ckpt = save_checkpoint(create_model("tanet_x4", **MODELS.get("tanet_x4").tiny), tmp_path / "t.pt")
    before = {r["method"]: r for r in csv.DictReader(open(tmp_path / "board" / "leaderboard.csv"))}
    for extra, out in (([], "mine"), (["--all"], "all")):
        result = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "board"), "--add", f"checkpoint={ckpt}",
                                          "--add", "label=Mine", *extra, "-q", "-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        new = json.loads((tmp_path / out / "runs" / "q" / "results.json").read_text())
        assert [m["label"] for m in new["models"]] == (["Bicubic", "TANet-S", "Mine"] if extra else ["Mine"])
        rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / out / "leaderboard.csv"))}
        assert set(rows) == set(before) | {"Mine (patch tokens)"}
        for method, line in before.items():
            assert float(rows[method]["q:psnr"]) == pytest.approx(float(line["q:psnr"]), abs=1e-9)
        mine = next(m for m in new["models"] if m["label"] == "Mine")
        assert float(rows["Mine (patch tokens)"]["q:psnr"]) == pytest.approx(mine["metrics"]["psnr"], abs=1e-9)
    bad = CliRunner().invoke(app, ["leaderboard", str(committed), "--add", "checkpoint=x", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "give its folder (the one holding leaderboard.json" in bad.output


def test_leaderboard_marks_a_row_selected_on_the_data_it_is_scored_on(tmp_path):
    from fsr_bench.results import SELECTION_NOTE

    run = tmp_path / "r"
    run.mkdir()
    row = {"label": "Mine", "name": "tanet_x4", "checkpoint_sha256": "ab" * 32, "metrics": {"ssim": 0.5, "psnr": 25.0},
           "training": {"steps": 10, "selected_on_evaluated_data": True}}
    other = {"label": "Bicubic", "name": "bicubic_x4", "role": "floor", "metrics": {"ssim": 0.4, "psnr": 24.0}}
    (run / "results.json").write_text(json.dumps({"kind": "reconstruction", "protocol_name": "val",
                                                  "conventions": {}, "models": [other, row]}))
    result = CliRunner().invoke(app, ["leaderboard", str(run), "-o", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert next(x for x in md.splitlines() if x.startswith("| Mine")).count("‡") == 1  # its method cell
    assert "‡" not in next(x for x in md.splitlines() if x.startswith("| Bicubic"))
    assert md.count(SELECTION_NOTE) == 1
