"""Start, pin, watch and stop the processes of a benchmark run; read their CPU time and memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuLayout:
    """Which core each role runs on (None: not pinned)."""

    server: int | None  # the proxy under test (sidecar or reference proxy), alone on its core
    load: int | None  # wrk / the constant-rate client
    upstream: int | None  # the legacy-AS stand-in (shares the load core on a 2-core machine)

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"server CPU{self.server}, load generator CPU{self.load}, upstream CPU{self.upstream}"
        )


def cpu_layout(pin: bool = True) -> CpuLayout:
    """Give the server a core of its own; load generator and upstream share the next one.

    On 2 cores this is the honest split: the proxy under test is the only thing on its core,
    so its throughput is bounded by its own work, while wrk and the upstream (both cheap per
    request compared with the proxy) share the other core. With a third core the upstream
    gets it.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return CpuLayout(None, None, None)
    return CpuLayout(cpus[0], cpus[1], cpus[2] if len(cpus) > 2 else cpus[1])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """Prefix a command with taskset so it (and every thread it starts) stays on one core."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (good enough on loopback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024  # reported in kB
    return found


@dataclass(slots=True)
class Server:
    """A long-running process of the bench: upstream, reference proxy, sidecar, provider."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id (taskset execs the command, so it is the server's own pid)."""
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the server wrote, for an error message."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL: a bench never leaves a server behind."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(
    name: str,
    command: list[str],
    *,
    port: int,
    cpu: int | None,
    log_dir: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: int | None = None,
) -> Server:
    """Start a server pinned to a core, its stderr (and stdout unless piped) to a log file."""
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        pinned(command, cpu),
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,  # a server that watches stdin dies with the bench
        stdout=log if stdout is None else stdout,
        stderr=log,
    )
    log.close()  # the child holds its own descriptor
    return Server(name, process, port, log_path)


def wait_listening(server: Server, timeout: float = 20.0) -> None:
    """Block until the server accepts TCP connections; fail with its log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not listen on {server.port} in {timeout:.0f}s")


def wait_ready(url: str, timeout: float = 10.0) -> bool:
    """Poll a readiness URL (the sidecar's /readyz) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (loopback URL built here)
            if answer.status == 200:
                return True
        time.sleep(0.1)
    return False


def core_times() -> dict[int, tuple[float, float, float]]:
    """Per core: busy, steal and total seconds since boot, from /proc/stat."""
    found: dict[int, tuple[float, float, float]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        # user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
        ticks = [int(v) for v in values[:8]]
        total = sum(ticks)
        idle, steal = ticks[3] + ticks[4], ticks[7]
        found[int(name[3:])] = (
            (total - idle - steal) / CLOCK_TICKS,
            steal / CLOCK_TICKS,
            total / CLOCK_TICKS,
        )
    return found


@dataclass(slots=True)
class CpuMeter:
    """CPU time of several processes across one measured interval."""

    pids: dict[str, int]
    started: float = 0.0
    wall: float = 0.0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    cores_before: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    cores_after: dict[int, tuple[float, float, float]] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self.before = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        self.cores_before = core_times()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.started
        self.after = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        self.cores_after = core_times()

    def percent(self) -> dict[str, float]:
        """CPU use of each process over the interval, in % of one core."""
        return {
            role: 100.0 * (self.after[role] - self.before[role]) / self.wall for role in self.pids
        }

    def cores(self) -> dict[int, dict[str, float]]:
        """Per core over the interval: busy % (anyone, kernel softirq work included) and steal %.

        Loopback packet processing is partly accounted as softirq time, not to any process,
        and on a shared machine other tenants show up here too: a busy core whose processes
        do not add up to its busy % was not the bench's alone.
        """
        found = {}
        for core, (busy, steal, total) in self.cores_after.items():
            busy0, steal0, total0 = self.cores_before[core]
            span = (total - total0) or 1e-9
            found[core] = {
                "busy": round(100 * (busy - busy0) / span, 1),
                "steal": round(100 * (steal - steal0) / span, 1),
            }
        return found
