"""Render the equivalence report (index.html, report.json, report.md) from claim records.

A record is one claim's result (``report_records.Record``, DESIGN.md "The report"). Plots are drawn with
matplotlib's object API on an Agg canvas, so no global backend or pyplot state is touched.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from seqcheck.equiv.report_records import Record, Series, base_status, report_json, summary

TITLE = "seqcheck equivalence report"
BUDGET_EXPLANATION = (
    "How to read the budget: the budget is the error a correct implementation may have, derived "
    "from the algorithm (its rule is given with each claim); the table shows it at the position "
    "of the worst error. A claim fails when error > budget anywhere, or when NaN/Inf appears where "
    "the reference is finite. The ratio column is the largest error / budget over all positions "
    "and examples: below 1 passes."
)
SUMMARY_HEADERS = (
    "Claim", "Family", "Status", "Exactness", "dtype / backend / device", "Examples",
    "Worst error", "Budget", "Ratio", "Seconds",
)
NUMERIC_HEADERS = {"Examples", "Worst error", "Budget", "Ratio", "Seconds"}
ZERO_FLOOR_WITHOUT_DATA = 1e-18  # where exact zeros go when a figure has no positive value at all
PNG_DPI = 110
COMPARISON_CAPTION = (" Right: the claims were swept over the same data (one seed), so their mean errors over"
                      " positions compare them; linear axis.")
CLAIM_COLOURS = matplotlib.colormaps["tab10"].colors
CLAIM_MARKERS = ("o", "s", "^", "D", "P", "X")  # the next marker after every 10 colours

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
       max-width: 1200px; margin: 2em auto; padding: 0 1.5em; }
h1 { margin-bottom: .2em; }
h2 { border-bottom: 2px solid #e3e6ec; padding-bottom: .2em; margin-top: 2em; }
h3 { margin: 1.4em 0 .3em; font-size: 1.05em; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
            font-size: .9em; }
pre { background: #f5f6f8; border: 1px solid #e3e6ec; border-radius: 4px; padding: .7em 1em;
      overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.meta { color: #5b6475; }
.note { color: #5b6475; font-size: .88em; }
.explain { background: #f3f7fd; border-left: 4px solid #7aa2d6; padding: .6em 1em; }
table { border-collapse: collapse; width: 100%; font-size: .9em; }
th, td { border-bottom: 1px solid #e3e6ec; padding: .4em .5em; text-align: left;
         vertical-align: top; }
th { background: #f5f6f8; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.over { color: #b3261e; font-weight: 600; }
td code, h3 code { overflow-wrap: break-word; }
.status { display: inline-block; padding: 0 .55em; border-radius: 1em; font-size: .85em;
          font-weight: 600; white-space: nowrap; }
.status-passed { background: #dff3e4; color: #1e6b34; }
.status-failed { background: #fbe0de; color: #a1221a; }
.status-not-run { background: #eceef2; color: #5b6475; }
.status-error { background: #fdebd3; color: #8a4b08; }
.status-passed-simulator, .status-passed-numpy { background: #e9f0e6; color: #4f6a4a; }
.status-failed-simulator, .status-failed-numpy { background: #fbe0de; color: #a1221a; }
.counts .status { font-size: 1em; margin-right: .4em; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr);
     gap: .15em 1em; margin: .4em 0 0; font-size: .93em; }
dt { color: #5b6475; }
dd { margin: 0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #5b6475; font-size: .9em; }
table.sweep { width: auto; margin: .6em 1.5em .2em 0; display: inline-table; }
table.sweep caption { text-align: left; color: #5b6475; font-size: .88em; padding-bottom: .2em; }
"""


@dataclass(frozen=True)
class Plot:
    """One written figure: where it is (relative to the report folder) and what it shows."""

    path: str
    title: str
    caption: str
    claim_keys: tuple[str, ...]

    @property
    def anchor(self) -> str:
        return "plot-" + Path(self.path).stem


def write_report(records: list[Record], out_dir: str | Path, meta: dict) -> dict[str, Path]:
    """Write index.html, report.json, report.md and plots/*.png into out_dir; return their paths."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    plots = _draw_plots(records, out)
    paths = {"html": out / "index.html", "json": out / "report.json", "md": out / "report.md"}
    _write_atomically(paths["json"], _render_json(records, meta))
    _write_atomically(paths["md"], _render_markdown(records, meta, plots))
    _write_atomically(paths["html"], _render_html(records, meta, plots))
    return paths


def _write_atomically(path: Path, text: str | None = None, figure: Figure | None = None) -> None:
    """Write ``text`` (or save ``figure``) to a temporary file beside ``path``, then rename it over
    ``path``: a report killed mid-write leaves the previous file or the new one, never half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as stream:
            if figure is not None:
                FigureCanvasAgg(figure)
                figure.savefig(stream, dpi=PNG_DPI, format=path.suffix.lstrip("."))
            else:
                stream.write(text.encode("utf-8"))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# ---------------------------------------------------------------------------------------- JSON


def _render_json(records: list[Record], meta: dict) -> str:
    return json.dumps(report_json(records, meta), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------- shared wording


def _format_number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _meta_parts(meta: dict) -> list[str]:
    return [
        f"profile {meta['profile']}",
        f"seqcheck {meta['seqcheck_version']}",
        f"Python {meta['python']}",
        f"NumPy {meta['numpy']}",
        meta["platform"],
        "devices: " + ", ".join(meta["devices"]),
        f"started {meta['started']}",
        f"took {_format_duration(meta['seconds'])}",
    ]


def _status_counts(records: list[Record]) -> dict[str, int]:
    counts = summary(records)
    counts.pop("records")
    return counts


def _counts_text(records: list[Record]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in _status_counts(records).items())
    return f"{len(records)} claims: {counts}"


def _families(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        grouped.setdefault(record.family, []).append(record)
    return grouped


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


# ------------------------------------------------------------------------------------- plots


def _draw_plots(records: list[Record], out: Path) -> list[Plot]:
    swept = [record for record in records if record.sweeps]
    styles = {record.key: _claim_style(i) for i, record in enumerate(swept)}
    plots = [
        _draw_param_plot(param, entries, styles, out)
        for param, entries in _sweeps_by_param(records).items()
    ]
    plots += [_draw_claim_plot(r, styles[r.key], out) for r in swept if len(r.sweeps) > 1]
    return plots


def _claim_style(index: int) -> tuple[tuple[float, float, float], str]:
    colour = CLAIM_COLOURS[index % len(CLAIM_COLOURS)]
    marker = CLAIM_MARKERS[index // len(CLAIM_COLOURS) % len(CLAIM_MARKERS)]
    return colour, marker


def _sweeps_by_param(records: list[Record]) -> dict[str, list[tuple[str, Series]]]:
    grouped: dict[str, list[tuple[str, Series]]] = {}
    for record in records:
        for sweep in record.sweeps:
            grouped.setdefault(sweep.param, []).append((record.key, sweep))
    return grouped


def _draw_param_plot(param: str, entries: list[tuple[str, Series]], styles: dict, out: Path) -> Plot:
    sweeps = [sweep for _, sweep in entries]
    label = " / ".join(dict.fromkeys(_split_label(sweep.label)[0] for sweep in sweeps))
    title = f"Error and budget against {label}"
    floor = _zero_floor(sweeps)
    compared = _same_data(sweeps)
    figure = Figure(figsize=(13 if compared else 8, 4.4 + 0.2 * len(entries)), layout="constrained")
    axes = figure.subplots(1, 2 if compared else 1, squeeze=False)[0]
    for key, sweep in entries:
        _plot_sweep(axes[0], sweep, styles[key], floor)
    _decorate_axes(axes[0], label, title, floor, sweeps)
    if compared:
        _plot_comparison(axes[1], entries, styles, label)
    claim_handles = [_claim_handle(_legend_entry(key, sweep), styles[key]) for key, sweep in entries]
    figure.legend(
        handles=claim_handles + _line_style_handles(), loc="outside lower center", fontsize=8,
        frameon=False,
    )
    path = f"plots/sweep_{_slug(param)}.png"
    _save(figure, out / path)
    caption = _caption(sweeps, floor) + (COMPARISON_CAPTION if compared else "")
    return Plot(path, title, caption, tuple(dict.fromkeys(k for k, _ in entries)))


def _same_data(sweeps: list[Series]) -> bool:
    """Several claims swept over the same data (one shared seed): their errors compare them."""
    seeds = {sweep.seed for sweep in sweeps}
    return len(sweeps) > 1 and len(seeds) == 1 and None not in seeds and all(s.mean_error is not None for s in sweeps)


def _plot_comparison(axes, entries: list[tuple[str, Series]], styles: dict, label: str) -> None:
    """The mean error over positions of each claim, linear axes: how the claims rank on the same data."""
    for key, sweep in entries:
        colour, marker = styles[key]
        axes.plot(np.asarray(sweep.values, dtype=float), np.asarray(sweep.mean_error, dtype=float),
                  linestyle="-", marker=marker, markersize=4, color=colour)
    _swept_x_axis(axes, [sweep for _, sweep in entries])
    axes.set_ylim(bottom=0)
    axes.set_xlabel(label)
    axes.set_ylabel("mean error over positions")
    axes.set_title("Mean error on the same data (linear)", fontsize=10)
    axes.grid(True, which="major", color="0.9")


def _draw_claim_plot(record: Record, style: tuple, out: Path) -> Plot:
    sweeps = record.sweeps
    floor = _zero_floor(sweeps)
    figure = Figure(figsize=(4.2 * len(sweeps), 4.2), layout="constrained")
    for axes, sweep in zip(figure.subplots(1, len(sweeps), squeeze=False)[0], sweeps):
        _plot_sweep(axes, sweep, style, floor)
        _decorate_axes(axes, sweep.label, f"against {sweep.label}", floor, [sweep])
    figure.suptitle(record.key, fontsize=10)
    figure.legend(handles=_line_style_handles(), loc="outside lower center", ncols=2, fontsize=8,
                  frameon=False)
    path = f"plots/claim_{_slug(record.key)}.png"
    _save(figure, out / path)
    title = f"All sweeps of {record.key}"
    return Plot(path, title, _caption(sweeps, floor), (record.key,))


def _plot_sweep(axes, sweep: Series, style: tuple, floor: float) -> None:
    """Worst error solid, mean error dotted, budget dashed in the claim's colour; exact zeros
    drawn hollow at floor."""
    colour, marker = style
    x = np.asarray(sweep.values, dtype=float)
    lines = ((sweep.error, "-", marker), (sweep.budget, "--", None))
    if sweep.mean_error is not None:
        lines += ((sweep.mean_error, ":", None),)
    for series, linestyle, line_marker in lines:
        y = np.asarray(series, dtype=float)
        zero = y == 0
        drawable = np.where(zero, floor, np.where(np.isfinite(y), y, np.nan))
        axes.plot(x, drawable, linestyle=linestyle, marker=line_marker, markersize=4, color=colour)
        axes.plot(x[zero], drawable[zero], linestyle="none", marker="v", markersize=8,
                  markerfacecolor="none", markeredgecolor=colour)


def _decorate_axes(axes, label: str, title: str, floor: float, sweeps: list[Series]) -> None:
    _swept_x_axis(axes, sweeps)
    axes.set_yscale("log")
    axes.set_xlabel(label)
    axes.set_ylabel("error and budget")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="major", color="0.9")
    if _count_zeros(sweeps):
        axes.axhline(floor, color="0.6", linewidth=0.8, linestyle=":")
        axes.annotate("exact 0", xy=(1, floor), xycoords=("axes fraction", "data"), xytext=(4, 0),
                      textcoords="offset points", ha="left", va="center", fontsize=8, color="0.4")


def _swept_x_axis(axes, sweeps: list[Series]) -> None:
    """A log x axis ticked at exactly the swept values."""
    values = sorted({float(v) for sweep in sweeps for v in sweep.values})
    axes.set_xscale("log")
    axes.set_xticks(values, labels=[f"{v:g}" for v in values])
    axes.set_xticks([], minor=True)


def _split_label(label: str) -> tuple[str, str]:
    """"chunk size (T=256, H=4)" -> ("chunk size", "T=256, H=4"): the axis and the setting."""
    head, _, setting = label.partition(" (")
    return head, setting.rstrip(")")


def _legend_entry(key: str, sweep: Series) -> str:
    setting = _split_label(sweep.label)[1]
    return f"{key} ({setting})" if setting else key


def _claim_handle(key: str, style: tuple) -> Line2D:
    colour, marker = style
    return Line2D([], [], color=colour, marker=marker, markersize=4, label=key)


def _line_style_handles() -> list[Line2D]:
    return [
        Line2D([], [], color="0.3", linestyle="-", label="worst error (solid)"),
        Line2D([], [], color="0.3", linestyle=":", label="mean error over positions (dotted)"),
        Line2D([], [], color="0.3", linestyle="--", label="budget (dashed)"),
    ]


def _series(sweeps: list[Series]) -> np.ndarray:
    return np.concatenate(
        [np.asarray(series, dtype=float) for sweep in sweeps for series in (sweep.error, sweep.budget, sweep.mean_error)
         if series is not None]
    )


def _zero_floor(sweeps: list[Series]) -> float:
    """A power of ten one decade below the smallest positive value: where exact zeros are drawn."""
    values = _series(sweeps)
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return ZERO_FLOOR_WITHOUT_DATA
    return 10.0 ** (math.floor(math.log10(positive.min())) - 1)


def _count_zeros(sweeps: list[Series]) -> int:
    return int(np.sum(_series(sweeps) == 0))


def _count_non_finite(sweeps: list[Series]) -> int:
    return int(np.sum(~np.isfinite(_series(sweeps))))


def _caption(sweeps: list[Series], floor: float) -> str:
    parts = ["Log-log; solid lines are the measured error, dashed lines the budget."]
    if _count_zeros(sweeps):
        parts.append(
            f"Exact zeros (error or budget = 0) cannot sit on a log axis: they are drawn at "
            f"{floor:.0e} as hollow triangles on the dotted line marked \"exact 0\"."
        )
    if non_finite := _count_non_finite(sweeps):
        parts.append(f"{non_finite} non-finite value(s) (NaN/Inf) are not drawn.")
    return " ".join(parts)


def _save(figure: Figure, path: Path) -> None:
    _write_atomically(path, figure=figure)


# -------------------------------------------------------------------------------------- HTML


def _render_html(records: list[Record], meta: dict, plots: list[Plot]) -> str:
    sections = [
        f"<h1>{TITLE}</h1>",
        f'<p class="meta">{html.escape(" · ".join(_meta_parts(meta)))}</p>',
        _html_summary(records),
        *(_html_family(family, members, plots) for family, members in _families(records).items()),
        _html_counterexamples(records),
        _html_plots(plots),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{TITLE}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _html_status(status: str, label: str | None = None) -> str:
    css_class = "status-" + re.sub(r"[^a-z]+", "-", status).strip("-")
    return f'<span class="status {css_class}">{html.escape(label or status)}</span>'


def _html_key(key: str) -> str:
    """The key as code that may wrap before "==" and after dots, never inside a name."""
    escaped = html.escape(key).replace("==", "<wbr>==").replace(".", ".<wbr>")
    return f"<code>{escaped}</code>"


def _claim_anchor(key: str) -> str:
    return "claim-" + _slug(key)


def _html_summary(records: list[Record]) -> str:
    counts = " ".join(
        _html_status(status, f"{n} {status}")
        for status, n in _status_counts(records).items()
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in SUMMARY_HEADERS)
    rows = "\n".join(_html_summary_row(r) for r in records)
    return (
        f'<h2>Summary</h2>\n<p class="counts">{len(records)} claims: {counts}</p>\n'
        f'<p class="explain">{html.escape(BUDGET_EXPLANATION)}</p>\n'
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    )


def _html_summary_row(record: Record) -> str:
    claim = (
        f'<a href="#{_claim_anchor(record.key)}">{_html_key(record.key)}</a>'
        f'<div class="note">{html.escape(record.claim)}</div>'
    )
    status = _html_status(record.status)
    if record.status in ("not run", "error") and record.reason:
        status += f'<div class="note">{html.escape(record.reason)}</div>'
    ratio_class = "num over" if record.ratio_exceeded else "num"
    cells = [
        f"<td>{claim}</td>",
        f"<td>{html.escape(record.family)}</td>",
        f"<td>{status}</td>",
        f"<td>{html.escape(record.exactness)}</td>",
        f"<td>{html.escape(_dtype_backend_device(record))}</td>",
        f'<td class="num">{record.examples}</td>',
        f'<td class="{ratio_class}">{_format_number(record.max_error)}</td>',
        f'<td class="num" title="{html.escape(record.budget_rule)}">'
        f"{_format_number(record.budget)}</td>",
        f'<td class="{ratio_class}">{_format_number(record.worst_ratio)}</td>',
        f'<td class="num">{record.seconds:.2f}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def _dtype_backend_device(record: Record) -> str:
    return f"{record.dtype} / {record.backend} / {record.device}"


def _format_shapes(shapes: dict) -> str:
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items()) or "—"


def _html_family(family: str, members: list[Record], plots: list[Plot]) -> str:
    articles = "\n".join(_html_claim_details(record, plots) for record in members)
    return f'<h2 id="family-{_slug(family)}">Family: {html.escape(family)}</h2>\n{articles}'


def _html_claim_details(record: Record, plots: list[Plot]) -> str:
    details = {
        "Exactness": html.escape(record.exactness),
        "Budget rule": html.escape(record.budget_rule) or "—",
        "Budget at worst": _format_number(record.budget),
        "Worst error": _format_number(record.max_error),
        "Error / budget": _format_number(record.worst_ratio),
        "dtype / backend / device": html.escape(_dtype_backend_device(record)),
        "Seed, examples": f"{record.seed}, {record.examples}",
        "Worst example shapes": html.escape(_format_shapes(record.shapes)),
        "Seconds": f"{record.seconds:.2f}",
    }
    if record.reason:
        details["Reason"] = html.escape(record.reason)
    if record.hint:
        details["Hint"] = html.escape(record.hint)
    if base_status(record.status) == "failed":
        details["Counterexample"] = f'<a href="#cx-{_slug(record.key)}">below</a>'
    if links := [p for p in plots if record.key in p.claim_keys]:
        details["Plots"] = ", ".join(
            f'<a href="#{p.anchor}">{html.escape(p.title)}</a>' for p in links
        )
    rows = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in details.items())
    return (
        f'<article id="{_claim_anchor(record.key)}">\n'
        f'<h3>{_html_key(record.key)} {_html_status(record.status)}</h3>\n'
        f'<p>{html.escape(record.claim)}</p>\n<dl>\n{rows}\n</dl>\n'
        f"{_html_sweep_tables(record)}</article>"
    )


def _sweep_rows(sweep: Series) -> list[tuple[str, str, str, str]]:
    means = sweep.mean_error if sweep.mean_error is not None else [None] * len(sweep.values)
    return [(f"{value:g}" if isinstance(value, (int, float)) else str(value), _format_number(error),
             _format_number(mean), _format_number(budget))
            for value, error, mean, budget in zip(sweep.values, sweep.error, means, sweep.budget)]


def _html_sweep_tables(record: Record) -> str:
    """The values behind the plots: one small table (value, error, budget) per sweep of the claim."""
    tables = []
    for sweep in record.sweeps:
        head = html.escape(_split_label(sweep.label)[0])
        rows = "".join(f'<tr><td class="num">{html.escape(value)}</td><td class="num">{error}</td>'
                       f'<td class="num">{mean}</td><td class="num">{budget}</td></tr>'
                       for value, error, mean, budget in _sweep_rows(sweep))
        tables.append(f'<table class="sweep"><caption>{html.escape(sweep.label)}</caption>'
                      f"<thead><tr><th>{head}</th><th>Worst error</th><th>Mean error</th><th>Budget</th></tr></thead>"
                      f"<tbody>{rows}</tbody></table>\n")
    return "".join(tables)


def _html_counterexamples(records: list[Record]) -> str:
    failed = [r for r in records if base_status(r.status) == "failed"]
    if not failed:
        return ""
    return "<h2>Counterexamples</h2>\n" + "\n".join(_html_counterexample(r) for r in failed)


def _html_counterexample(record: Record) -> str:
    parts = [
        f'<h3 id="cx-{_slug(record.key)}">{_html_key(record.key)}</h3>',
        f"<pre>{html.escape(record.failure_message)}</pre>",
    ]
    if counterexample := record.counterexample:
        parts += [
            "<p>Shrunk arguments:</p>",
            f"<pre>{html.escape(counterexample.args)}</pre>",
            "<p>Reproducer (runs on its own):</p>",
            f"<pre>{html.escape(counterexample.reproducer)}</pre>",
        ]
    return "\n".join(parts)


def _html_plots(plots: list[Plot]) -> str:
    if not plots:
        return "<h2>Plots</h2>\n<p>No claim recorded a sweep.</p>"
    figures = "\n".join(
        f'<figure id="{p.anchor}"><img src="{html.escape(p.path)}" alt="{html.escape(p.title)}">'
        f"<figcaption><b>{html.escape(p.title)}.</b> {html.escape(p.caption)}</figcaption></figure>"
        for p in plots
    )
    return f"<h2>Plots</h2>\n{figures}"


# ---------------------------------------------------------------------------------- Markdown


def _render_markdown(records: list[Record], meta: dict, plots: list[Plot]) -> str:
    lines = [
        f"# {TITLE}", "", " · ".join(_meta_parts(meta)), "", f"**{_counts_text(records)}**", "",
        BUDGET_EXPLANATION, "", *_markdown_table(records), *_markdown_sweeps(records),
    ]
    if failed := [r for r in records if base_status(r.status) == "failed"]:
        lines += ["", "## Counterexamples"]
        for record in failed:
            lines += _markdown_counterexample(record)
    if plots:
        lines += ["", "## Plots"]
        for plot in plots:
            lines += ["", f"![{plot.title}]({plot.path})", "", f"*{plot.title}.* {plot.caption}"]
    return "\n".join(lines) + "\n"


def _markdown_table(records: list[Record]) -> list[str]:
    header = "| " + " | ".join(SUMMARY_HEADERS) + " |"
    alignments = ("---:" if h in NUMERIC_HEADERS else "---" for h in SUMMARY_HEADERS)
    separator = "|" + "|".join(alignments) + "|"
    return [header, separator, *(_markdown_row(r) for r in records)]


def _markdown_sweeps(records: list[Record]) -> list[str]:
    """The values behind the plots: per claim with sweeps, one table (value, error, budget) each."""
    swept = [record for record in records if record.sweeps]
    lines = ["", "## Sweeps"] if swept else []
    for record in swept:
        lines += ["", f"### `{record.key}`"]
        for sweep in record.sweeps:
            head = _markdown_cell(_split_label(sweep.label)[0])
            lines += ["", f"*{_markdown_cell(sweep.label)}*", "", f"| {head} | Worst error | Mean error | Budget |",
                      "|---:|---:|---:|---:|"]
            lines += [f"| {value} | {error} | {mean} | {budget} |" for value, error, mean, budget in _sweep_rows(sweep)]
    return lines


def _markdown_row(record: Record) -> str:
    status = {"failed": "**failed**", "not run": f"not run: {record.reason}",
              "error": f"**error**: {record.reason}"}.get(record.status, record.status)
    cells = [
        f"`{record.key}`", record.family, status, record.exactness,
        _dtype_backend_device(record), str(record.examples), _format_number(record.max_error),
        _format_number(record.budget), _format_number(record.worst_ratio),
        f"{record.seconds:.2f}",
    ]
    return "| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_counterexample(record: Record) -> list[str]:
    lines = ["", f"### `{record.key}`", "", *_markdown_fence(record.failure_message, "text")]
    if counterexample := record.counterexample:
        lines += ["", "Shrunk arguments:", "", *_markdown_fence(counterexample.args, "text")]
        lines += ["", "Reproducer:", "", *_markdown_fence(counterexample.reproducer, "python")]
    return lines


def _markdown_fence(text: str, language: str) -> list[str]:
    """A fenced block longer than any backtick run inside text, so the text cannot close it."""
    longest_run = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    return [fence + language, text.rstrip("\n"), fence]
