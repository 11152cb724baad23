"""Many concurrent paced streams, and create_many against a plain gather, at scale.

    python benchmarks/bench_scale.py [--repeat 3] [--n 200 1000] [--items 10000]

Starts a fake upstream (``_scale_upstream.py``: raw asyncio HTTP/1.1, keep-alive) in its own
process, then runs every client in a fresh process (``_scale_worker.py``), ``--repeat``
times, the clients' order rotated each repetition so that a noisy moment does not land on
one client.

- **streams**: N concurrent streams (``asyncio.gather``), each 40 events 50 ms apart, so the
  ideal wall time is 39 x 50 ms = 1.95 s. Clients: ``routmy-default`` (``AsyncRoutmy`` with
  only ``api_key``/``base_url``), ``routmy-pool`` (``max_connections=N``), ``floor`` (raw
  aiohttp with ``TCPConnector(limit=N)`` + msgspec typed decode + a minimal SSE splitter),
  ``openai-default`` (openai-python, httpx transport) and ``openai-aiohttp``
  (``DefaultAioHttpClient``); the openai ones are skipped with a note when not installed.
  Reported: wall / ideal, client CPU µs per chunk, RSS KiB per stream (RSS in the middle of
  the time most streams were open, minus RSS before, over N), the most streams open at once.
- **create_many**: 10,000 non-streamed requests at concurrency 256, through
  ``create_many(..., concurrency=256)`` and through a plain ``asyncio.gather`` over
  ``create`` bounded by ``asyncio.Semaphore(256)`` (same client, ``max_connections=256``);
  with ``routmy_async.RateLimit`` available, also ``create_many`` on a client with
  ``rate_limit=RateLimit(requests_per_minute=10_000_000)`` (never throttles).

Every result is checked after the timer stops (each stream's exact text; each completion's
text, in order): a fast but wrong client fails its run. Writes
``benchmarks/scale-results.json`` and ``benchmarks/scale-results.md`` (``--out`` to change).
Needs the ``bench`` extra for the openai rows: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UPSTREAM = HERE / "_scale_upstream.py"
WORKER = HERE / "_scale_worker.py"
CLIENTS = ["routmy-default", "routmy-pool", "floor", "openai-default", "openai-aiohttp"]
EVENTS = 40
INTERVAL = 0.05
IDEAL = round((EVENTS - 1) * INTERVAL, 6)
TARGET_WALL = 1.3  # routmy defaults, at 1,000 streams
TARGET_CPU = 1.25  # x the floor, per chunk
TARGET_RSS = 1.2  # x the floor, per open stream
TARGET_MANY = 1.15  # x the plain gather, CPU per item
WALL_TARGET_N = 1000
OPENAI_CHECK = {
    "openai-default": "import openai",
    "openai-aiohttp": (
        "import asyncio, openai\n"
        "async def main():\n"
        "    await openai.DefaultAioHttpClient().aclose()\n"
        "asyncio.run(main())"
    ),
}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit_s: float, threshold: float = 0.25) -> float:
    """Wait (up to ``limit_s``) until other processes use under ``threshold`` of a core over
    one second; returns the seconds waited. Our upstream idles between runs (~0%)."""
    started = time.perf_counter()
    while True:
        busy0 = machine_busy_seconds()
        time.sleep(1.0)
        waited = time.perf_counter() - started
        if machine_busy_seconds() - busy0 < threshold or waited >= limit_s:
            return waited


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("ROUTMY_API_KEY", None)
    env.pop("ROUTMY_BASE_URL", None)
    return env


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class Upstream:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM), "--events", str(EVENTS), "--interval", str(INTERVAL)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"upstream did not start: {line!r}")
        self.port = int(line.split()[1])

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def git_revision() -> str:
    """The checkout measured (others may commit while a long run goes on)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


def run_worker(
    upstream: Upstream, args: list[str], timeout: float, quiet_wait: float
) -> dict[str, Any]:
    """One worker run; its RESULT, plus the upstream's CPU share and schedule meanwhile."""
    waited = wait_for_quiet(quiet_wait) if quiet_wait > 0 else 0.0
    revision = git_revision()
    upstream.stats()  # reset
    cpu0, t0 = upstream.cpu(), time.perf_counter()
    busy0, children0 = machine_busy_seconds(), children_cpu_seconds()
    try:
        done = subprocess.run(
            [sys.executable, str(WORKER), *args, "--port", str(upstream.port)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=child_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    elapsed = time.perf_counter() - t0
    upstream_cpu = upstream.cpu() - cpu0
    worker_cpu = children_cpu_seconds() - children0
    others = machine_busy_seconds() - busy0 - upstream_cpu - worker_cpu
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    # Shares of one core over the whole worker process (start-up and warm-up included).
    result["upstream_cpu_share"] = upstream_cpu / elapsed
    result["other_cpu_share"] = max(0.0, others / elapsed)  # other processes: noise
    result["quiet_wait_s"] = waited
    result["git"] = revision
    result["upstream"] = upstream.stats()
    return result


def available_clients(wanted: list[str]) -> tuple[list[str], list[str]]:
    clients, notes = [], []
    for name in wanted:
        check = OPENAI_CHECK.get(name)
        if check is not None:
            probe = subprocess.run(
                [sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT
            )
            if probe.returncode != 0:
                reason = (probe.stderr.strip().splitlines() or ["?"])[-1]
                notes.append(f"{name} skipped: {reason}")
                continue
        clients.append(name)
    return clients, notes


def rate_limit_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import routmy_async; routmy_async.RateLimit"],
        capture_output=True,
        cwd=ROOT,
        env=child_env(),
    )
    return probe.returncode == 0


# -- summary ------------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float] | None, digits: int = 1) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def ok(value: float | None, limit: float) -> str:
    if value is None:
        return "?"
    return "✓" if value <= limit else "✗"


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"streams": {}, "many": {}}
    every_run = [r for runs in raw["streams"].values() for rs in runs.values() for r in rs]
    every_run += [r for runs in raw["many"].values() for r in runs]
    summary["other_cpu_share"] = spread(
        [r["other_cpu_share"] for r in every_run if "other_cpu_share" in r]
    )
    summary["revisions"] = sorted({r["git"] for r in every_run if "git" in r})
    for n, per_client in raw["streams"].items():
        rows: dict[str, Any] = {}
        for client, runs in per_client.items():
            good = [r for r in runs if "error" not in r]
            rows[client] = {
                "runs": len(good),
                "errors": [r["error"] for r in runs if "error" in r],
                "wall_ratio": spread([r["wall_s"] / IDEAL for r in good]),
                "cpu_us_per_chunk": spread([r["cpu_us_per_chunk"] for r in good]),
                "rss_kib_per_stream": spread([r["rss_kib_per_stream"] for r in good]),
                "peak_open": spread([float(r["peak_open"]) for r in good]),
                "all_open_s": spread([r["all_open_s"] for r in good]),
                "upstream_late_ms": spread(
                    [
                        r["upstream"]["late_median"] * 1000
                        for r in good
                        if r["upstream"]["late_median"] is not None
                    ]
                ),
                "upstream_cpu_share": spread([r["upstream_cpu_share"] for r in good]),
                "upstream_duration_s": spread(
                    [
                        r["upstream"]["duration_median"]
                        for r in good
                        if r["upstream"]["duration_median"] is not None
                    ]
                ),
                "upstream_late_max_ms": spread(
                    [
                        r["upstream"]["late_max"] * 1000
                        for r in good
                        if r["upstream"]["late_max"] is not None
                    ]
                ),
            }
        floor = rows.get("floor")
        for row in rows.values():
            for key, ratio in (
                ("cpu_us_per_chunk", "cpu_vs_floor"),
                ("rss_kib_per_stream", "rss_vs_floor"),
            ):
                mine, base = row[key], floor[key] if floor else None
                row[ratio] = mine["median"] / base["median"] if mine and base else None
            wall, floor_wall = row["wall_ratio"], floor["wall_ratio"] if floor else None
            row["wall_vs_floor"] = (
                wall["median"] / floor_wall["median"] if wall and floor_wall else None
            )
        summary["streams"][n] = rows
    base = None
    for variant, runs in raw["many"].items():
        good = [r for r in runs if "error" not in r]
        summary["many"][variant] = {
            "runs": len(good),
            "errors": [r["error"] for r in runs if "error" in r],
            "wall_s": spread([r["wall_s"] for r in good]),
            "items_per_s": spread([r["items_per_s"] for r in good]),
            "cpu_us_per_item": spread([r["cpu_us_per_item"] for r in good]),
        }
        if variant == "gather":
            base = summary["many"][variant]["cpu_us_per_item"]
    for row in summary["many"].values():
        mine = row["cpu_us_per_item"]
        row["vs_gather"] = mine["median"] / base["median"] if mine and base else None
    return summary


def target_cell(client: str, n: int, row: dict[str, Any]) -> str:
    if not client.startswith("routmy"):
        return "—"
    parts = []
    if client == "routmy-default" and n == WALL_TARGET_N:
        wall = row["wall_ratio"]["median"] if row["wall_ratio"] else None
        parts.append(f"wall ≤ {TARGET_WALL} {ok(wall, TARGET_WALL)}")
    parts.append(f"CPU ≤ {TARGET_CPU}x {ok(row['cpu_vs_floor'], TARGET_CPU)}")
    parts.append(f"RSS ≤ {TARGET_RSS}x {ok(row['rss_vs_floor'], TARGET_RSS)}")
    return "; ".join(parts)


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(raw: dict[str, Any], summary: dict[str, Any]) -> str:
    meta = raw["meta"]
    out = [
        f"`{meta['command']}` on {meta['date']}: Python {meta['python']}, asyncio loop, "
        f"{meta['cpus']} CPUs; routmy_async at {meta['git']}, aiohttp {meta['aiohttp']}, "
        f"msgspec {meta['msgspec']}, openai {meta['openai'] or 'not installed'}. "
        f"Median (min-max) of {meta['repeat']} runs, each client in a fresh process, "
        "clients interleaved.",
        "",
    ]
    if summary["streams"]:
        out += [
            f"Streams: N at once, {EVENTS} events {INTERVAL * 1000:.0f} ms apart "
            f"(ideal wall time {IDEAL:.2f} s).",
            "",
            "| workload / N | client | wall / ideal | all open after s | upstream late ms "
            "| CPU µs / chunk | RSS KiB / stream | peak open | wall / floor | CPU / floor "
            "| RSS / floor | target |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, rows in summary["streams"].items():
            for client, row in rows.items():
                if row["runs"] == 0:
                    error = row["errors"][0] if row["errors"] else "no run"
                    out.append(f"| {int(n):,} streams | {client} | FAILED: {error} |||||||||| |")
                    continue
                peak = row["peak_open"]
                if row["runs"] < meta["repeat"]:
                    client = f"{client} ({row['runs']} of {meta['repeat']} runs)"
                out.append(
                    f"| {int(n):,} streams | {client} | {fmt(row['wall_ratio'], 2)} "
                    f"| {fmt(row['all_open_s'], 2)} | {fmt(row['upstream_late_ms'], 0)} "
                    f"| {fmt(row['cpu_us_per_chunk'])} | {fmt(row['rss_kib_per_stream'])} "
                    f"| {peak['median']:.0f} | {ratio(row['wall_vs_floor'])} "
                    f"| {ratio(row['cpu_vs_floor'])} | {ratio(row['rss_vs_floor'])} "
                    f"| {target_cell(client, int(n), row)} |"
                )
        out.append("")
    if summary["many"]:
        items, conc = raw["meta"]["items"], raw["meta"]["concurrency"]
        out += [
            "| workload | variant | wall s | items / s | CPU µs / item | / gather | target |",
            "|---|---|---|---|---|---|---|",
        ]
        for variant, row in summary["many"].items():
            label = f"{items:,} items, concurrency {conc}"
            if row["runs"] == 0:
                error = row["errors"][0] if row["errors"] else "no run"
                out.append(f"| {label} | {variant} | FAILED: {error} ||||| |")
                continue
            target = "baseline"
            if variant != "gather":
                target = f"≤ {TARGET_MANY}x {ok(row['vs_gather'], TARGET_MANY)}"
            out.append(
                f"| {label} | {variant} | {fmt(row['wall_s'], 2)} | {fmt(row['items_per_s'], 0)} "
                f"| {fmt(row['cpu_us_per_item'])} | {ratio(row['vs_gather'])} | {target} |"
            )
        out.append("")
    notes = list(raw["meta"]["notes"])
    for n, rows in summary["streams"].items():
        durations = [r["upstream_duration_s"] for r in rows.values() if r["upstream_duration_s"]]
        lates = [r["upstream_late_max_ms"] for r in rows.values() if r["upstream_late_max_ms"]]
        shares = [r["upstream_cpu_share"] for r in rows.values() if r["upstream_cpu_share"]]
        if durations and lates and shares:
            notes.append(
                f"Upstream at N = {int(n):,}: request to [DONE] took "
                f"{min(d['median'] for d in durations):.3f}-"
                f"{max(d['median'] for d in durations):.3f} s (median per client), last event "
                f"at most {max(x['max'] for x in lates):.1f} ms late; its CPU "
                f"{min(s['median'] for s in shares) * 100:.0f}-"
                f"{max(s['median'] for s in shares) * 100:.0f}% of a core over a client's run."
            )
    if len(summary["revisions"]) > 1:
        notes.append(
            "The checkout changed during the run (others committing): runs measured "
            + ", ".join(summary["revisions"])
            + "; each run's revision is in the JSON."
        )
    other = summary["other_cpu_share"]
    if other:
        notes.append(
            f"Other processes on the machine used {other['median'] * 100:.0f}% of a core "
            f"(median over runs; {other['min'] * 100:.0f}-{other['max'] * 100:.0f}%) while the "
            "benchmark ran: wall times swing with it, CPU and RSS per unit much less."
        )
    for n, rows in summary["streams"].items():
        for client, row in rows.items():
            for error in row["errors"]:
                notes.append(f"{client} at N = {int(n):,} failed a run: {error}")
    for variant, row in summary["many"].items():
        for error in row["errors"]:
            notes.append(f"{variant} failed a run: {error}")
    out += [f"- {note}" for note in notes]
    return "\n".join(out).rstrip() + "\n"


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--clients", nargs="+", default=CLIENTS, choices=CLIENTS)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--rate-limit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add create_many on a client with rate_limit=RateLimit(...) "
        "(default: when routmy_async.RateLimit exists)",
    )
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--skip-many", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker run")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=5,
        help="before each run, wait up to this many seconds for other processes on the "
        "machine to use under 25%% of a core (0: do not wait)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "scale-results")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="print the tables of a saved results file again, without running anything",
    )
    args = parser.parse_args()
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        raw = {"meta": saved["meta"], **saved["runs"]}
        print(markdown(raw, summarize(raw)), end="")
        return
    raise_fd_limit()

    clients, notes = available_clients(args.clients)
    variants = ["gather", "create_many"]
    has_rate_limit = rate_limit_available()
    if args.rate_limit is None:
        args.rate_limit = has_rate_limit
    if args.rate_limit and has_rate_limit:
        variants.append("create_many+rate_limit")
    elif args.rate_limit:
        notes.append("create_many+rate_limit skipped: routmy_async.RateLimit does not exist")
    git = git_revision()
    raw: dict[str, Any] = {
        "meta": {
            "command": shlex.join(["python", "benchmarks/bench_scale.py", *sys.argv[1:]]),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "git": git,
            "aiohttp": version("aiohttp"),
            "msgspec": version("msgspec"),
            "openai": version("openai"),
            "repeat": args.repeat,
            "ideal_s": IDEAL,
            "events": EVENTS,
            "interval_s": INTERVAL,
            "items": args.items,
            "concurrency": args.concurrency,
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
            "notes": notes,
        },
        "streams": {} if args.skip_streams else {str(n): {c: [] for c in clients} for n in args.n},
        "many": {} if args.skip_many else {v: [] for v in variants},
    }
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    started = time.perf_counter()
    upstream = Upstream()
    try:
        for rep in range(args.repeat):
            for n in [] if args.skip_streams else args.n:
                order = clients[rep % len(clients) :] + clients[: rep % len(clients)]
                for client in order:
                    result = run_worker(
                        upstream,
                        ["streams", "--client", client, "--n", str(n)],
                        args.timeout,
                        args.quiet_wait,
                    )
                    raw["streams"][str(n)][client].append(result)
                    print(
                        f"[{rep + 1}/{args.repeat}] N={n} {client}: {brief(result)}",
                        file=sys.stderr,
                    )
            if not args.skip_many:
                order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for variant in order:
                    cmd = [
                        "many",
                        "--variant",
                        variant,
                        "--items",
                        str(args.items),
                        "--concurrency",
                        str(args.concurrency),
                    ]
                    result = run_worker(upstream, cmd, args.timeout, args.quiet_wait)
                    raw["many"][variant].append(result)
                    print(
                        f"[{rep + 1}/{args.repeat}] many {variant}: {brief(result)}",
                        file=sys.stderr,
                    )
    finally:
        upstream.stop()
    raw["meta"]["elapsed_s"] = time.perf_counter() - started

    summary = summarize(raw)
    text = markdown(raw, summary)
    print(text)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "meta": raw["meta"],
                "summary": summary,
                "runs": {"streams": raw["streams"], "many": raw["many"]},
            },
            indent=1,
        )
        + "\n"
    )
    args.out.with_suffix(".md").write_text(text)
    print(f"took {raw['meta']['elapsed_s']:.0f} s; wrote {args.out}.json and .md", file=sys.stderr)


def brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED " + result["error"]
    noise = (
        f" (others {result['other_cpu_share'] * 100:.0f}% of a core, "
        f"waited {result['quiet_wait_s']:.0f} s)"
    )
    if "cpu_us_per_chunk" in result:
        return (
            f"wall {result['wall_s']:.2f} s, {result['cpu_us_per_chunk']:.1f} µs/chunk, "
            f"{result['rss_kib_per_stream']:.1f} KiB/stream, peak open {result['peak_open']}"
            + noise
        )
    return f"wall {result['wall_s']:.2f} s, {result['cpu_us_per_item']:.1f} µs/item" + noise


if __name__ == "__main__":
    main()
