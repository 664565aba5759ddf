"""Turn a run's measurements into the table, the target lines, the JSON file and the charts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target of the issue, checked against figures of the same run."""

    name: str
    value: float | None  # None: a scenario it needs did not run
    target: str  # human-readable, e.g. ">= 0.85"
    passed: bool | None  # None: not judged (skipped)
    detail: str


def at_least(
    name: str, value: float | None, minimum: float, detail: str, invalid: list[str] | None = None
) -> Verdict:
    """A ratio that must reach `minimum`; a figure from an invalid scenario never passes."""
    passed = None if value is None else value >= minimum and not invalid
    return Verdict(name, value, f">= {minimum:g}", passed, with_invalid(detail, invalid))


def at_most(
    name: str, value: float | None, maximum: float, detail: str, invalid: list[str] | None = None
) -> Verdict:
    """A cost that must stay under `maximum`; a figure from an invalid scenario never passes."""
    passed = None if value is None else value <= maximum and not invalid
    return Verdict(name, value, f"<= {maximum:g}", passed, with_invalid(detail, invalid))


def with_invalid(detail: str, invalid: list[str] | None) -> str:
    """Name the scenarios whose answers were wrong or failed."""
    return f"{detail} [invalid: {', '.join(invalid)}]" if invalid else detail


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


DISTINCT_LEGEND = (
    "*-distinct: every answer distinct (the stand-in puts a counter in jti): no signature "
    "reuse.\nreuse%: answers of the run that reused a signature made earlier in the same "
    "second (sidecar/reuse.py);\nsign µs: mean time of one fresh signature inside the "
    "sidecar (its signing histogram)."
)


def counters_of(row: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's own counters over a run (empty for servers that are not the sidecar)."""
    return row.get("sidecar_counters") or {}


def reuse_note(row: dict[str, Any]) -> str:
    """`  reused 99.9 %, sign 31 µs` for a progress line, when the sidecar signed anything."""
    counters = counters_of(row)
    if not counters.get("signatures_made") and not counters.get("signatures_reused"):
        return ""
    text = f"  reused {counters['reused_percent']:.1f} %"
    if counters.get("sign_us_mean") is not None:
        text += f", sign {counters['sign_us_mean']:.0f} µs"
    return text


def throughput_table(results: list[dict[str, Any]]) -> str:
    """One line per throughput scenario: rate, latency, errors, CPU, memory, reuse."""
    header = (
        f"{'scenario':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'srv CPU%':>8} {'srv RSS MB':>10} {'up CPU%':>7} {'wrk CPU%':>8} {'reuse%':>6} "
        f"{'sign µs':>7}  bound by / notes"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        cpu = row["cpu_percent"]
        counters = counters_of(row)
        signs = counters.get("signatures_made") or counters.get("signatures_reused")
        reused = counters.get("reused_percent") if signs else None
        lines.append(
            f"{row['name']:<22} {_fmt(row['rps']):>8} {_fmt(row['latency_ms']['p50'], 2):>7} "
            f"{_fmt(row['latency_ms']['p99'], 2):>7} {row['error_count']:>6} "
            f"{_fmt(cpu['server']):>8} {_fmt(row['rss_mb'], 1):>10} {_fmt(cpu['upstream']):>7} "
            f"{_fmt(cpu['loadgen']):>8} {_fmt(reused, 1):>6} "
            f"{_fmt(counters.get('sign_us_mean')):>7}  {row['bound_by']}{notes(row)}"
        )
    return "\n".join(lines)


def notes(row: dict[str, Any]) -> str:
    """Why a row should not be trusted, if it should not."""
    text = f"; INVALID: {row['problem']}" if row.get("problem") else ""
    if row.get("disturbed"):
        text += f"; DISTURBED: {row['disturbed']}"
    return text


def latency_table(results: list[dict[str, Any]]) -> str:
    """Constant-rate runs: achieved rate, percentiles and the generator's own lag."""
    header = (
        f"{'scenario @ rate':<30} {'achieved':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'p99.9':>7} {'failed':>6} {'srv CPU%':>8} {'lag p99':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        latency = row["latency_ms"]
        lines.append(
            f"{row['name'] + ' @ ' + format(row['target_rate'], ',.0f'):<30} "
            f"{_fmt(row['achieved_rate']):>9} {latency['p50']:>7.3f} {latency['p90']:>7.3f} "
            f"{latency['p99']:>7.3f} {latency['p999']:>7.3f} {row['failed']:>6} "
            f"{_fmt(row['cpu_percent']['server']):>8} {row['dispatch_lag_ms']['p99']:>7.3f}"
            f"{notes(row)}"
        )
    return "\n".join(lines)


def verdict_lines(verdicts: list[Verdict], degraded: bool) -> str:
    """One line per target with PASS/FAIL (or SKIP)."""
    lines = []
    for verdict in verdicts:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[verdict.passed]
        if degraded and verdict.passed is not None:
            word += " (stand-in)"
        value = "-" if verdict.value is None else f"{verdict.value:.3f}"
        lines.append(
            f"{word:<17} {verdict.name:<40} {value:>8} {verdict.target:<8} {verdict.detail}"
        )
    return "\n".join(lines)


def info_lines(distinct: dict[str, Any]) -> str:
    """The informational ratios on distinct answers, each line labelled as such."""
    lines = []
    for ratio in distinct["ratios"]:
        word = "INFO (invalid)" if ratio["invalid"] else "INFO"
        fixed = ratio["fixed_answer_value"]
        detail = (
            f"{distinct['note']}; {ratio['scenario']} / {ratio['baseline']} "
            f"({ratio['baseline_rps']:,.0f}/s); fixed answer: "
            f"{'-' if fixed is None else format(fixed, '.3f')}; not judged"
        )
        if ratio["disturbed"]:
            detail += f" [disturbed: {', '.join(ratio['disturbed'])}]"
        name = f"{ratio['name']} (distinct)"
        target = f"(>= {ratio['issue_minimum']:g})"
        lines.append(f"{word:<17} {name:<40} {ratio['value']:>8.3f} {target:<8} {detail}")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any], verdicts: list[Verdict]) -> None:
    """The whole run, machine-readable."""
    document = {**document, "verdicts": [asdict(verdict) for verdict in verdicts]}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def draw_chart(path: Path, document: dict[str, Any], verdicts: list[Verdict]) -> bool:
    """Throughput, latency under full load and at half load, as one PNG (False: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a server or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    throughput = document["throughput"]
    latency = document.get("latency") or []
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(12, 14), gridspec_kw={"height_ratios": [3.4, 3.4, 1.2]}
    )
    names = [row["name"] + flags(row) for row in throughput]
    draw_throughput(top, document, names)

    positions = range(len(throughput))
    for offset, percentile in ((-0.2, "p50"), (0.2, "p99")):
        middle.barh(
            [p + offset for p in positions],
            [row["latency_ms"][percentile] for row in throughput],
            height=0.4,
            label=percentile,
        )
    middle.set_yticks(list(positions), names)
    middle.invert_yaxis()
    middle.set_xlabel("latency under full load, ms")
    middle.legend()

    if latency:
        labels = [f"{row['name']} @ {row['target_rate']:,.0f}/s{flags(row)}" for row in latency]
        spots = range(len(latency))
        for offset, percentile in ((-0.2, "p50"), (0.2, "p99")):
            bottom.barh(
                [p + offset for p in spots],
                [row["latency_ms"][percentile] for row in latency],
                height=0.4,
                label=percentile,
            )
        bottom.set_yticks(list(spots), labels)
        bottom.invert_yaxis()
        bottom.legend()
    bottom.set_xlabel("latency at half of the sidecar's maximum load (constant rate), ms")

    passed = sum(v.passed is True for v in verdicts)
    judged = sum(v.passed is not None for v in verdicts)
    meta = document["meta"]
    figure.suptitle(
        f"sidecar bench ({meta['mode']}, target: {meta['target']}) - "
        f"{passed}/{judged} targets met - {meta['started']}"
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def flags(row: dict[str, Any]) -> str:
    """Short marks for a chart label: a wrong answer, or another tenant on a core."""
    marks = [
        word for word, key in (("invalid", "problem"), ("disturbed", "disturbed")) if row.get(key)
    ]
    return f" ({', '.join(marks)})" if marks else ""


def draw_throughput(axes: Any, document: dict[str, Any], names: list[str]) -> None:
    """Bars of req/s with the signed targets as lines; direct upstream's bar is cut short.

    Signed bars carry their ratio to sidecar-json; the distinct-answer runs (no signature
    reuse, informational) are orange.
    """
    from matplotlib.patches import Patch

    throughput = document["throughput"]
    proxies = [row["rps"] for row in throughput if row["role"] not in ("upstream", "provider")]
    cap = 1.3 * max(proxies or [row["rps"] for row in throughput] or [1.0])
    widths = [min(row["rps"], cap) for row in throughput]
    colours = [
        DISTINCT_COLOUR if row.get("distinct") else ROLE_COLOURS.get(row["role"], "tab:gray")
        for row in throughput
    ]
    bars = axes.barh(names, widths, color=colours)
    for bar, row in zip(bars, throughput, strict=True):
        if row.get("problem"):
            bar.set_hatch("//")
            bar.set_edgecolor("tab:red")
    json_rps = next((r["rps"] for r in throughput if r["name"] == "sidecar-json"), None)
    t_rsa = document.get("sign_rates", {}).get("RS256")
    limit = 1 / (1 / json_rps + 1 / t_rsa) if json_rps and t_rsa else None
    labels = []
    for row in throughput:
        label = f"{row['rps']:,.0f}" + (" (bar cut)" if row["rps"] > cap else "")
        if json_rps and row["role"] == "sidecar" and row["name"] != "sidecar-json":
            label += f"  ({row['rps'] / json_rps:.2f} x JSON"
            if limit and "rs256" in row["name"]:
                label += f", {row['rps'] / limit:.2f} x L"
            label += ")"
        labels.append(label)
    axes.bar_label(bars, labels=labels, padding=3)
    handles: list[Any] = []
    if json_rps:
        handles.append(
            axes.axvline(
                0.8 * json_rps,
                color="tab:red",
                linestyle="--",
                label="0.80 x sidecar-json (ES256 and EdDSA target)",
            )
        )
    if limit:
        handles.append(
            axes.axvline(
                0.9 * limit,
                color="tab:brown",
                linestyle=":",
                label="0.90 x L, L = 1/(1/T_json + 1/T_rsa) (RS256 target)",
            )
        )
    if any(row.get("distinct") for row in throughput):
        handles.append(
            Patch(color=DISTINCT_COLOUR, label="every answer distinct: no signature reuse")
        )
    if handles:
        axes.legend(handles=handles, loc="lower right", fontsize="small")
    axes.invert_yaxis()
    axes.set_xlim(0, cap * 1.3)
    axes.set_xlabel("requests/s (wrk, closed loop); hatched: the answer was not what was asked for")
    axes.set_title("Throughput")


def draw_soak_chart(path: Path, soak: dict[str, Any]) -> bool:
    """RSS of the proxy under test against requests served (False: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5))
    samples = soak["samples"]
    axes.plot([s["requests"] for s in samples], [s["rss_mb"] for s in samples], marker="o")
    axes.axhline(soak["baseline_rss_mb"] * 1.05, color="tab:red", linestyle="--", label="+5 %")
    axes.set_xlabel("requests served after warm-up")
    axes.set_ylabel("RSS, MB")
    axes.set_title(f"soak: RSS growth {soak['growth_percent']:+.2f} %")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


DISTINCT_COLOUR = "tab:orange"
ROLE_COLOURS = {
    "upstream": "tab:green",
    "refproxy": "tab:olive",
    "sidecar": "tab:blue",
    "provider": "tab:purple",
    "provider-sidecar": "tab:cyan",
}
