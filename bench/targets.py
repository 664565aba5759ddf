"""The issue's targets, each judged on figures of one run: ratios, added latency, memory."""

from __future__ import annotations

from typing import Any

import report

# target name -> (scenario, baseline scenario, minimum ratio of their req/s)
THROUGHPUT_TARGETS = {
    "JSON passthrough / reference proxy": ("sidecar-json", "refproxy-json", 0.85),
    "ES256 / JSON passthrough": ("rfc9701-es256", "sidecar-json", 0.80),
    "EdDSA / JSON passthrough": ("rfc9701-eddsa", "sidecar-json", 0.80),
}
PROVIDER_PAIR = ("provider+sidecar-es256", "provider-native-es256")


def invalid(rows: list[dict[str, Any]]) -> list[str]:
    """Scenarios whose answers were wrong or failed: their figures never pass a target."""
    return [row["name"] for row in rows if row.get("problem")]


def caveat(detail: str, rows: list[dict[str, Any]]) -> str:
    """Append which scenarios were disturbed by another tenant (judged, but to be re-run)."""
    disturbed = [f"{row['name']}: {row['disturbed']}" for row in rows if row.get("disturbed")]
    return f"{detail} [disturbed: {'; '.join(disturbed)}]" if disturbed else detail


def throughput_verdicts(document: dict[str, Any]) -> list[report.Verdict]:
    """Ratios of req/s between scenarios of the run, and RS256 against its physical limit."""
    rows = {row["name"]: row for row in document.get("throughput", [])}
    found: list[report.Verdict] = []
    pairs = dict(THROUGHPUT_TARGETS)
    provider_target = "sidecar / node-oidc-provider native ES256"
    if "provider" in document:
        pairs[provider_target] = (*PROVIDER_PAIR, 1.0)
    if "skipped" in document.get("provider", {}):
        skipped = document["provider"]["skipped"]
        found.append(report.Verdict(provider_target, None, ">= 1", None, f"skipped: {skipped}"))
    for name, (a, b, minimum) in pairs.items():
        if a in rows and b in rows:
            both = [rows[a], rows[b]]
            value = rows[a]["rps"] / rows[b]["rps"] if rows[b]["rps"] else None
            detail = caveat("req/s ratio", both)
            found.append(report.at_least(name, value, minimum, detail, invalid(both)))
    t_rsa = document.get("sign_rates", {}).get("RS256")
    limit = rs256_limit(rows, document)
    if "rfc9701-rs256" in rows and limit:
        both = [rows["rfc9701-rs256"], rows["sidecar-json"]]
        t_json = rows["sidecar-json"]["rps"]
        detail = caveat(f"L = 1/(1/{t_json:,.0f} + 1/{t_rsa:,.0f}) = {limit:,.0f}/s", both)
        value = rows["rfc9701-rs256"]["rps"] / limit
        found.append(report.at_least("RS256 / L", value, 0.90, detail, invalid(both)))
    sidecar_rss = [row["rss_mb"] for row in rows.values() if row["role"] == "sidecar"]
    if sidecar_rss:
        # Measured after each scenario, so the largest is the RSS once every path is warm.
        detail = "largest VmRSS of the proxy under test between runs"
        found.append(report.at_most("RSS after warm-up (MB)", max(sidecar_rss), 80, detail))
    return found


# informational ratio name -> (distinct scenario, its fixed-answer twin, issue's minimum)
DISTINCT_RATIOS = {
    "ES256 / JSON passthrough": ("rfc9701-es256-distinct", "rfc9701-es256", 0.80),
    "EdDSA / JSON passthrough": ("rfc9701-eddsa-distinct", "rfc9701-eddsa", 0.80),
    "RS256 / L": ("rfc9701-rs256-distinct", "rfc9701-rs256", 0.90),
}
DISTINCT_NOTE = "every answer distinct: no signature reuse"


def rs256_limit(rows: dict[str, dict[str, Any]], document: dict[str, Any]) -> float | None:
    """L = 1/(1/T_json + 1/T_rsa): a JSON hop plus one raw RSA-2048 signature per request."""
    t_rsa = document.get("sign_rates", {}).get("RS256")
    if "sidecar-json" not in rows or not t_rsa or not rows["sidecar-json"]["rps"]:
        return None
    return 1 / (1 / rows["sidecar-json"]["rps"] + 1 / t_rsa)


def distinct_answer_ratios(document: dict[str, Any]) -> dict[str, Any]:
    """The issue's signed ratios again, on runs where every answer differed (not judged).

    The targets are measured as the issue specifies: one token, one fixed upstream answer,
    which lets the sidecar reuse a signature within a second. These ratios show what the
    same sidecar does when it must sign every answer (many distinct tokens at once).
    """
    rows = {row["name"]: row for row in document.get("throughput", [])}
    if "sidecar-json" not in rows:
        return {}
    json_rps = rows["sidecar-json"]["rps"]
    limit = rs256_limit(rows, document)
    ratios = []
    for name, (scenario, fixed, minimum) in DISTINCT_RATIOS.items():
        if scenario not in rows or not json_rps:
            continue
        base = limit if name == "RS256 / L" else json_rps
        if base is None:
            continue
        row = rows[scenario]
        counters = row.get("sidecar_counters") or {}
        ratios.append(
            {
                "name": name,
                "scenario": scenario,
                "value": round(row["rps"] / base, 3),
                "baseline": "L" if name == "RS256 / L" else "sidecar-json",
                "baseline_rps": round(base, 1),
                "fixed_answer_value": round(rows[fixed]["rps"] / base, 3)
                if fixed in rows
                else None,
                "issue_minimum": minimum,
                "reused_percent": counters.get("reused_percent"),
                "sign_us_mean": counters.get("sign_us_mean"),
                "invalid": invalid([row, rows["sidecar-json"]]),
                "disturbed": [r["name"] for r in (row, rows["sidecar-json"]) if r.get("disturbed")],
            }
        )
    return {"note": DISTINCT_NOTE, "ratios": ratios} if ratios else {}


def latency_verdicts(document: dict[str, Any]) -> list[report.Verdict]:
    """Added p50/p99 of the sidecar over direct upstream, both at the same constant rate."""
    by_name = {row["name"]: row for row in document.get("latency", [])}
    if "direct-json" not in by_name or "sidecar-json" not in by_name:
        return []
    both = [by_name["direct-json"], by_name["sidecar-json"]]
    detail = caveat(f"sidecar-json minus direct-json at {both[0]['target_rate']:,.0f}/s", both)
    return [
        report.at_most(
            f"added {p} latency at half load (ms)",
            both[1]["latency_ms"][p] - both[0]["latency_ms"][p],
            maximum,
            detail,
            invalid(both),
        )
        for p, maximum in (("p50", 0.5), ("p99", 2.0))
    ]


def soak_verdicts(document: dict[str, Any]) -> list[report.Verdict]:
    """RSS after warm-up and its growth over the soak."""
    if "soak" not in document:
        return []
    soaked = document["soak"]
    growth_detail = f"over {soaked['requests']:,} requests"
    if soaked["wrong_answers"]:
        growth_detail += f"; wrong answers from {', '.join(soaked['wrong_answers'])}"
    errors = [f"{soaked['errors']} failed requests"] if soaked["errors"] else None
    return [
        report.at_most(
            "soak: RSS after warm-up (MB)",
            soaked["baseline_rss_mb"],
            80,
            f"VmRSS of the {soaked['role']} process",
        ),
        report.at_most("soak: RSS growth (%)", soaked["growth_percent"], 5, growth_detail, errors),
    ]


def verdicts(document: dict[str, Any]) -> list[report.Verdict]:
    """Every target of the issue that this run has the figures for."""
    return throughput_verdicts(document) + latency_verdicts(document) + soak_verdicts(document)
