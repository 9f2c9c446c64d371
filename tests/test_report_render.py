"""The report renderer writes a self-contained HTML page, strict JSON, Markdown and PNG plots."""

import itertools
import json
import math
import re

import pytest

from seqcheck.equiv.report_records import SCHEMA_VERSION, Record
from seqcheck.equiv.report_render import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

META = {
    "profile": "dev",
    "seqcheck_version": "0.1.0",
    "python": "3.11.7",
    "numpy": "2.4.6",
    "platform": "Linux-x86_64",
    "started": "2025-01-01T12:00:00",
    "seconds": 12.5,
    "devices": ["cpu"],
}


def _record(key, status, **overrides):
    """A record as report.json holds it, read back as a Record."""
    record = {
        "key": key,
        "family": key.split(".")[0],
        "claim": f"{key} holds",
        "status": status,
        "reason": None,
        "exactness": "float64 bound",
        "seed": 0,
        "examples": 100,
        "dtype": "float64",
        "backend": "numpy",
        "device": "cpu",
        "shapes": {"q": [1, 5, 2, 4]},
        "budget": {"rule": "4u(2Dσ+3Tk+4)max|v|", "value": 1.2e-14},
        "max_error": 3.1e-16,
        "worst_ratio": 0.02,
        "counterexample": None,
        "sweeps": [],
        "seconds": 1.23,
    }
    return Record.from_json(record | overrides)


@pytest.fixture(scope="module")
def records():
    passed = _record(
        "attention.flash.tiled==attention.softmax.parallel",
        "passed",
        sweeps=[
            {"param": "T", "label": "sequence length T", "values": [16, 64, 256],
             "error": [0.0, 1e-16, 4e-16], "budget": [1e-14, 4e-14, 1.6e-13]},
            {"param": "block", "label": "block size", "values": [1, 4, 16],
             "error": [2e-16, 1e-16, 0.0], "budget": [1e-14, 1e-14, 1e-14]},
        ],
    )
    failed = _record(
        "retnet.retention.chunked==retnet.retention.parallel",
        "failed",
        reason="error 1e-3 > budget 1e-14",
        max_error=math.inf,
        worst_ratio=math.nan,
        counterexample={
            "args": "q=array(shape=(1,1,1,1))",
            "reproducer": "import numpy as np\nprint('<script>alert(1)</script>')\n",
            "message": "NaN where the reference is finite <script>",
        },
        sweeps=[{"param": "T", "label": "sequence length T", "values": [16, 64],
                 "error": [1e-3, math.inf], "budget": [1e-14, 4e-14]}],
    )
    not_run = _record(
        "mamba.selective_scan.torch==mamba.selective_scan.recurrent",
        "not run",
        reason="torch is not installed",
        examples=0,
        budget=None,
        max_error=None,
        worst_ratio=None,
        shapes={},
        seconds=0.0,
    )
    return [passed, failed, not_run]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("render") / "report"


@pytest.fixture(scope="module")
def written(records, out_dir):
    return write_report(records, out_dir, META)


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_writes_the_three_files(written, out_dir):
    expected = {"html": "index.html", "json": "report.json", "md": "report.md"}
    assert written == {kind: out_dir / name for kind, name in expected.items()}
    assert all(path.is_file() for path in written.values())


def test_json_round_trips_with_non_finite_floats_as_strings(written, records):
    report = json.loads(written["json"].read_text(), parse_constant=_reject_constant)
    assert report["meta"] == META
    assert [claim["key"] for claim in report["claims"]] == [r.key for r in records]
    failed = report["claims"][1]
    assert (failed["max_error"], failed["worst_ratio"]) == ("inf", "nan")
    assert failed["sweeps"][0]["error"] == [1e-3, "inf"]
    assert report["claims"][0] == records[0].to_json()
    assert [Record.from_json(claim) for claim in report["claims"]][:1] == records[:1]  # NaN != NaN in the others
    assert Record.from_json(failed).to_json() == failed


def test_json_has_a_schema_version_and_summary_counts(written):
    report = json.loads(written["json"].read_text())
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["summary"] == {"records": 3, "passed": 1, "failed": 1, "error": 0, "not run": 1}


def test_html_escapes_counterexamples(written):
    page = written["html"].read_text()
    assert "<script>" not in page
    assert "print(&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;)" in page
    assert "torch is not installed" in page


def test_html_references_only_written_pngs(written):
    page = written["html"].read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    # one figure per swept parameter (T, block) and one for the claim with two sweeps
    assert sorted(sources) == [
        "plots/claim_attention.flash.tiled_attention.softmax.parallel.png",
        "plots/sweep_T.png",
        "plots/sweep_block.png",
    ]
    for source in sources:
        assert (written["html"].parent / source).read_bytes().startswith(PNG_MAGIC)
    assert "Exact zeros" in page
    assert "non-finite" in page


def test_markdown_table_has_one_row_per_record(written, records):
    lines = written["md"].read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| Claim")))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:]))
    assert len(table) == len(records)
    assert all(f"`{r.key}`" in row for r, row in zip(records, table))
    assert "```python" in written["md"].read_text()
    assert "](plots/sweep_T.png)" in written["md"].read_text()


def _policy(key, seed, mean_error):
    return _record(key, "passed", sweeps=[{"param": "fraction", "label": "budget fraction", "values": [0.25, 0.5, 1],
                                           "seed": seed, "error": [0.3, 0.1, 1e-16], "budget": [1.5, 1.0, 1e-11],
                                           "mean_error": mean_error}])


@pytest.mark.parametrize("seeds, compared", [((7, 7), True), ((7, 8), False), ((None, None), False)])
def test_only_sweeps_over_the_same_data_get_a_comparison_panel(tmp_path, seeds, compared):
    records = [_policy("eviction.quality.tova", seeds[0], [0.05, 0.02, 0.0]),
               _policy("eviction.quality.window", seeds[1], [0.3, 0.15, 0.0])]
    write_report(records, tmp_path, META)
    html = (tmp_path / "index.html").read_text()
    assert ("their mean errors over positions compare them" in html) == compared
    from PIL import Image

    width, _ = Image.open(tmp_path / "plots" / "sweep_fraction.png").size
    assert (width > 1200) == compared  # two panels, 13 inches at 110 dpi, against one of 8
