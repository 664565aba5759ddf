"""Measure one scenario: check an answer, warm up, then time it while sampling CPU and memory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

import answers
import loads
from lab import BENCH_DIR, Lab
from processes import CpuMeter, memory_bytes, pinned

MB = 1024 * 1024
GENERATOR_LAG_MS = 1.0  # rateload's dispatch lag p99 above this: the schedule was not kept


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request against one server role."""

    name: str
    role: str  # upstream | refproxy | sidecar | provider | provider-sidecar
    spec: loads.RequestSpec
    expected: answers.Expectation

    @property
    def distinct(self) -> bool:
        """Every answer differs (informational scenario: no signature reuse possible)."""
        return self.expected.distinct


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds of each phase."""

    warmup: float
    duration: float
    sign_seconds: float  # per algorithm, for the raw signing rates
    distinct_duration: float  # measured seconds of the informational distinct-answer runs

    def of(self, scenario: Scenario) -> Timing:
        """The timing of one scenario (distinct-answer runs may be shorter in --quick)."""
        if not scenario.distinct:
            return self
        return dataclasses.replace(self, duration=self.distinct_duration)


def check(lab: Lab, scenario: Scenario) -> str | None:
    """What is wrong with the scenario's answer, if anything."""
    return answers.check_answer(
        lab.urls[scenario.role],
        scenario.spec,
        scenario.expected,
        signing_keys=lab.verify_keys[scenario.role],
        client_keys=lab.keys.client_private,
    )


def watched_pids(lab: Lab, role: str) -> dict[str, int]:
    """The server under test and, when it is a proxy, its upstream."""
    pids = {"server": lab.servers[role].pid}
    if role in lab.upstream_of:
        pids["upstream"] = lab.servers[lab.upstream_of[role]].pid
    return pids


def server_core(lab: Lab, role: str) -> int | None:
    """The core the server of a role runs on: upstream-like servers share the load core."""
    return lab.layout.upstream if role in ("upstream", "provider") else lab.layout.server


def core_usage(
    lab: Lab, role: str, cpu: dict[str, float | None], cores: dict[int, dict[str, float]]
) -> dict[int, dict[str, Any]]:
    """Per pinned core: how busy it was, which of our processes used it, and what was left.

    "other" is busy time no process of the bench accounts for: loopback softirq work (a few
    %), or another tenant of a shared machine. A lot of it means the run was disturbed.
    """
    layout = lab.layout
    users: dict[int, dict[str, float]] = {}
    for who, core in (
        ("server", server_core(lab, role)),
        ("upstream", layout.upstream),
        ("wrk", layout.load),
    ):
        used = cpu.get("loadgen" if who == "wrk" else who)
        if used is not None and core is not None:
            users.setdefault(core, {})[who] = used
    found: dict[int, dict[str, Any]] = {}
    for core, ours in users.items():
        busy = cores.get(core, {}).get("busy", 0.0)
        other = max(0.0, busy - sum(ours.values()))
        found[core] = {
            "busy": busy,
            "ours": ours,
            "other": round(other, 1),
            "steal": cores.get(core, {}).get("steal", 0.0),
        }
    return found


def bound_by(usage: dict[int, dict[str, Any]]) -> str:
    """Name the busiest core and who used it: the bottleneck of a closed-loop run."""
    if not usage:
        return "unpinned"
    core, busiest = max(usage.items(), key=lambda item: item[1]["busy"])
    parts = " + ".join(f"{who} {used:.0f}" for who, used in busiest["ours"].items())
    text = f"CPU{core} {busiest['busy']:.0f}% busy ({parts}, other {busiest['other']:.0f})"
    if busiest["steal"] >= 1:
        text += f", steal {busiest['steal']:.0f}%"
    return text + (" saturated" if busiest["busy"] >= 90 else "")


def disturbance(usage: dict[int, dict[str, Any]], threshold: float = 15.0) -> str | None:
    """Name a core where something outside the bench took `threshold` % and it mattered.

    It matters on the server's own core, and on any core that was saturated; a busy
    neighbour on the half-idle load core costs nothing in a server-bound run.
    """
    for core, facts in usage.items():
        outside = facts["other"] + facts["steal"]
        matters = "server" in facts["ours"] or facts["busy"] >= 90
        if outside >= threshold and matters:
            return f"CPU{core}: {facts['other']:.0f}% other + {facts['steal']:.0f}% steal"
    return None


def core_speed(lab: Lab, core: int | None) -> float:
    """A quick ES256 signs/s probe on the idle server core, taken just before a scenario.

    On a shared VM a neighbour can slow a core without any steal time showing in /proc/stat:
    the server then burns 100 % CPU for fewer requests. A probe well under the run's best
    marks the scenario as disturbed.
    """
    return signing_rates(lab, 0.25, "ES256", core)["ES256"]


def sidecar_counters(lab: Lab, role: str) -> dict[str, float] | None:
    """The sidecar's own counters (admin /metrics): answers, reused signatures, signing time.

    Read just before and after a measured run, their difference tells how many answers of
    the run reused a signature (sidecar/reuse.py) and what one fresh signature cost inside
    the running sidecar (`sidecar_signing_duration_seconds`, the sign call alone).
    """
    url = lab.metrics_urls.get(role)
    if url is None:
        return None
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback URL built here)
        text = answer.read().decode()
        found: dict[str, float] = {"requests": 0.0, "reused": 0.0, "signed": 0.0, "sign_s": 0.0}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, _, value = line.rpartition(" ")
            if name.startswith("sidecar_introspection_requests_total{"):
                found["requests"] += float(value)
            elif name == "sidecar_signatures_reused_total":
                found["reused"] = float(value)
            elif name.startswith("sidecar_signing_duration_seconds_count{"):
                found["signed"] += float(value)
            elif name.startswith("sidecar_signing_duration_seconds_sum{"):
                found["sign_s"] += float(value)
        return found
    return None


def counter_delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, Any] | None:
    """Share of answers that reused a signature, and mean µs per fresh signature, over a run."""
    if before is None or after is None:
        return None
    answered = after["requests"] - before["requests"]
    signed = after["signed"] - before["signed"]
    reused = after["reused"] - before["reused"]
    return {
        "answers": int(answered),
        "signatures_made": int(signed),
        "signatures_reused": int(reused),
        "reused_percent": round(100 * reused / answered, 2) if answered else None,
        "sign_us_mean": round(1e6 * (after["sign_s"] - before["sign_s"]) / signed, 1)
        if signed
        else None,
    }


def measure_throughput(
    lab: Lab, scenario: Scenario, timing: Timing, connections: int = 64
) -> dict[str, Any]:
    """Probe the core, warm up, then one closed-loop wrk run of `timing.duration` seconds."""
    url = lab.urls[scenario.role]
    problem = check(lab, scenario)
    speed = core_speed(lab, server_core(lab, scenario.role))
    cpu_core = lab.layout.load
    loads.run_wrk(url, scenario.spec, seconds=timing.warmup, cpu=cpu_core, connections=connections)
    server_pid = lab.servers[scenario.role].pid
    rss_after_warmup = memory_bytes(server_pid)["VmRSS"] / MB
    counters_before = sidecar_counters(lab, scenario.role)
    with CpuMeter(watched_pids(lab, scenario.role)) as meter:
        result = loads.run_wrk(
            url, scenario.spec, seconds=timing.duration, cpu=cpu_core, connections=connections
        )
    counters = counter_delta(counters_before, sidecar_counters(lab, scenario.role))
    cpu: dict[str, float | None] = {"upstream": None, **meter.percent()}
    cpu["loadgen"] = 100 * result.loadgen_cpu_seconds / meter.wall
    memory = memory_bytes(server_pid)
    usage = core_usage(lab, scenario.role, cpu, meter.cores())
    if result.error_count and not problem:
        problem = f"{result.error_count} failed requests {result.errors}"
    return {
        "name": scenario.name,
        "role": scenario.role,
        "distinct": scenario.distinct,
        "url": url,
        "accept": scenario.spec.accept,
        "rps": round(result.rps, 1),
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        "latency_ms": {name: round(value, 3) for name, value in result.latency_ms.items()},
        "errors": result.errors,
        "error_count": result.error_count,
        "cpu_percent": {name: None if v is None else round(v, 1) for name, v in cpu.items()},
        "rss_after_warmup_mb": round(rss_after_warmup, 1),
        "rss_mb": round(memory["VmRSS"] / MB, 1),
        "hwm_mb": round(memory["VmHWM"] / MB, 1),
        "cores": usage,
        "bound_by": bound_by(usage),
        "disturbed": disturbance(usage),
        "core_speed": speed,
        "sidecar_counters": counters,
        "problem": problem,
    }


def measure_latency(lab: Lab, scenario: Scenario, rate: float, timing: Timing) -> dict[str, Any]:
    """Constant-rate run (open loop, rateload.py) at `rate` requests/s."""
    url = lab.urls[scenario.role]
    problem = check(lab, scenario)
    with CpuMeter(watched_pids(lab, scenario.role)) as meter:
        summary = loads.run_rate(
            url,
            scenario.spec,
            rate=rate,
            seconds=timing.duration,
            warmup=timing.warmup,
            cpu=lab.layout.load,
        )
    failed = int(summary["failed"])
    statuses = summary["statuses"]
    assert isinstance(statuses, dict)
    bad_status = sum(count for code, count in statuses.items() if not code.startswith("2"))
    if (failed or bad_status) and not problem:
        problem = f"{failed} failed, statuses {statuses}"
    achieved = float(summary["achieved_rate"])  # type: ignore[arg-type]
    if achieved < 0.97 * rate and not problem:
        problem = f"achieved {achieved:.0f}/s of {rate:.0f}/s: the generator fell behind"
    cpu: dict[str, float | None] = {"upstream": None, **meter.percent()}
    cpu["loadgen"] = 100 * float(summary["loadgen_cpu_seconds"]) / meter.wall  # type: ignore[arg-type]
    usage = core_usage(lab, scenario.role, cpu, meter.cores())
    lag = summary["dispatch_lag_ms"]
    assert isinstance(lag, dict)
    disturbed = disturbance(usage)
    if lag["p99"] > GENERATOR_LAG_MS and not disturbed:
        # The generator itself was held up (its core was busy): its schedule was not kept.
        disturbed = f"generator dispatch lag p99 {lag['p99']:.2f} ms"
    return {
        "name": scenario.name,
        "role": scenario.role,
        **summary,
        "cpu_percent": {name: None if v is None else round(v, 1) for name, v in cpu.items()},
        "cores": usage,
        "disturbed": disturbed,
        "problem": problem,
    }


def signing_rates(
    lab: Lab, seconds: float, algs: str = "RS256,ES256,EdDSA", core: int | None = None
) -> dict[str, float]:
    """Raw single-core signs/s (RS256 = T_rsa), on the (idle) sidecar core unless told."""
    command = [
        sys.executable,
        str(BENCH_DIR / "sign_rate.py"),
        "--seconds",
        str(seconds),
        "--algs",
        algs,
    ]
    done = subprocess.run(
        pinned(command, lab.layout.server if core is None else core),
        capture_output=True,
        text=True,
        check=True,
    )
    rates: dict[str, float] = json.loads(done.stdout)
    return rates


def soak(
    lab: Lab, scenarios: list[Scenario], timing: Timing, requests: int, segment: float
) -> dict[str, Any]:
    """Serve `requests` requests in rotation through every sidecar kind; follow RSS throughout."""
    role = scenarios[0].role
    pid = lab.servers[role].pid
    problems = {}
    for scenario in scenarios:  # warm-up: every code path once, under load
        problem = check(lab, scenario)
        if problem:
            problems[scenario.name] = problem
            print(f"warning: {scenario.name}: {problem}", file=sys.stderr)
        loads.run_wrk(lab.urls[role], scenario.spec, seconds=timing.warmup, cpu=lab.layout.load)
    baseline = memory_bytes(pid)["VmRSS"] / MB
    samples = [{"requests": 0, "rss_mb": round(baseline, 2), "scenario": "warm-up"}]
    served = errors = index = 0
    while served < requests:
        scenario = scenarios[index % len(scenarios)]
        result = loads.run_wrk(lab.urls[role], scenario.spec, seconds=segment, cpu=lab.layout.load)
        served += result.requests
        errors += result.error_count
        rss = memory_bytes(pid)["VmRSS"] / MB
        samples.append({"requests": served, "rss_mb": round(rss, 2), "scenario": scenario.name})
        print(f"  soak {served:>9,} requests  RSS {rss:6.1f} MB  ({scenario.name})")
        index += 1
    final = samples[-1]["rss_mb"]
    assert isinstance(final, float)
    return {
        "role": role,
        "requests": served,
        "errors": errors,
        "baseline_rss_mb": round(baseline, 2),
        "final_rss_mb": final,
        "max_rss_mb": max(float(s["rss_mb"]) for s in samples),  # type: ignore[arg-type]
        "growth_percent": round(100 * (final - baseline) / baseline, 2),
        "samples": samples,
        "wrong_answers": problems,  # such scenarios did not exercise the path they name
    }
