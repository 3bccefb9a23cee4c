"""The report's reading layout (issue 22): each section leads with one compact table, the full
operating-point grid goes to an appendix and to CSV, TARs are labelled by where their threshold came
from, and bar charts carry the runner's confidence intervals.

Built from run files committed under ``reports/`` (what a clone has; no ../shared, nothing recomputed).
"""
from __future__ import annotations

import csv
import re

import pytest
from conftest import REPO

from fsr_bench.reporting.load import load_run
from fsr_bench.results import read_run

LFW = REPO / "reports" / "lfw_surveillance_x8" / "runs" / "lfw_surveillance_x8"


def _tables(text: str) -> list[list[list[str]]]:
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


@pytest.fixture(scope="module")
def lfw_report(tmp_path_factory):
    from fsr_bench.reporting import write_report

    if not (LFW / "results.json").is_file():
        pytest.skip(f"{LFW} is not committed in this checkout")
    return write_report([LFW], tmp_path_factory.mktemp("report") / "r")


def test_recognition_section_leads_with_one_compact_table_and_the_grid_goes_to_the_appendix(lfw_report):
    text = lfw_report.read_text()
    section = text.split("## Recognition — ", 1)[1].split("\n## ", 1)[0]
    lead = _tables(section)[0]
    assert len(lead[0]) <= 8 and "TAR@FAR=1e-3 (%) ↑" in lead[0] and "TAR@cal 1e-3 (%) ↑" in lead[0]
    # one footnote says how the two TARs differ
    assert "TAR@FAR=1e-3: each row's own threshold" in section and "TAR@cal 1e-3: one threshold per recogniser" in section
    assert "best per scale" not in text  # one scale: no Scale column anywhere
    tanet = next(m for m in read_run(LFW / "results.json").models if m.label.startswith("TANet"))
    cal = tanet.by_recogniser["mobilefacenet"].operating_points.at_far(1e-3).tar
    row = next(r for r in lead[1:] if r[0].startswith("TANet"))
    assert row[lead[0].index("TAR@cal 1e-3 (%) ↑")].strip("*") == f"{100 * cal:.1f}"
    assert re.fullmatch(r"\*\*\d+\.\d\*\* \[\d+\.\d, \d+\.\d\]", row[1]), row[1]  # 59.8 [51.6, 68.3]
    # the wide grid is not in the section but in the appendix, which the section links to
    assert "thr@FAR 1e-3" not in section
    anchor = re.search(r"\[appendix\]\(#([^)]+)\)", section).group(1)
    heading = next(h for h in text.splitlines() if h.startswith("## Appendix: "))
    assert anchor == re.sub(r"[^\w\- ]", "", heading[3:].lower()).replace(" ", "-")
    assert "thr@FAR 1e-3" in text.split(heading, 1)[1]


def test_the_full_grid_is_written_as_csv_with_raw_values(lfw_report):
    lines = list(csv.DictReader(open(lfw_report.parent / "operating_points.csv", encoding="utf-8")))
    models = read_run(LFW / "results.json").models
    assert len(lines) == sum(len(m.by_recogniser) for m in models)
    for line in lines:
        ops = next(m for m in models if m.label == line["label"]).by_recogniser[line["recogniser"]].operating_points
        got = (ops.at_far(1e-3).tar, ops.at_far(1e-3).far, ops.at_far(1e-2).wrong_id, ops.at_far(1e-4).threshold)
        assert tuple(float(line[k]) for k in ("tar_cal_1e-3", "far_cal_1e-3", "wrong_id_cal_1e-2", "threshold_cal_1e-4")) == got


def test_bar_charts_draw_the_runners_intervals_at_the_tables_precision():
    from matplotlib.container import ErrorbarContainer

    from fsr_bench.reporting.plots import method_colours, recognition_bars

    if not (LFW / "results.json").is_file():
        pytest.skip(f"{LFW} is not committed in this checkout")
    run = load_run(LFW)
    fig = recognition_bars([run], method_colours(r.label for r in run.rows), "t")
    ax = next(a for a in fig.axes if a.get_title().startswith("Matching Accuracy"))
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    with_ci = [r for r in run.rows if "matching_accuracy" in r.ci95]
    assert with_ci and len(bars) == len(with_ci)
    spans = sorted(tuple(round(float(y), 6) for y in seg[:, 1]) for b in bars for seg in b.lines[2][0].get_segments())
    assert spans == sorted(tuple(round(100 * v, 1) for v in r.ci95["matching_accuracy"]) for r in with_ci)
    labels = {t.get_text().strip() for t in ax.texts}
    assert {f"{100 * r.metrics['matching_accuracy']:.1f}" for r in run.rows} <= labels  # one decimal, as the table
