"""routmy_async against openai-python (httpx and aiohttp transports) and a raw floor.

    python benchmarks/bench_clients.py [--repeat 3] [--uvloop] [--quick]
    python benchmarks/bench_clients.py --ab REV [--repeat 9] [--workloads nonstream,stream,tools]

Starts the fake upstream (``_upstream.py``) in its own process, then runs every
(client, workload) pair in a fresh process (``_worker.py``), ``--repeat`` times. Reports the
median and min-max of client CPU per unit, the ratio to the floor (raw aiohttp + msgspec),
the upstream's CPU share, import time, client creation time and RSS. Writes
``benchmarks/results.json``, ``benchmarks/results.md`` and, with matplotlib installed,
``benchmarks/results.png``.

``--ab REV`` compares this checkout (B) with git revision REV (A, checked out into a temporary
worktree): the routmy client only, A and B alternating in fresh processes (A, B, A, B, ...)
against one upstream, ``--repeat`` times each (at least 7). It reports, per workload, the
median and interquartile range of client CPU per unit for each side and B's median over A's,
and import time and RSS the same way. The same worker script drives both sides, so only the
library differs.

Needs the ``bench`` extra: ``pip install -e '.[bench]'`` (openai[aiohttp], matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLIENTS = ["routmy", "floor", "openai", "openai-aiohttp"]
WORKLOADS = {
    "nonstream": ("non-streaming, concurrency 64", "µs CPU / request"),
    "stream": ("streaming 20 x 1,000 chunks (+ final completion)", "µs CPU / chunk"),
    "paced": ("paced streaming, 1 event / ms", "µs CPU / chunk"),
    "tools": ("tool-call streams, ~200 fragments", "µs CPU / chunk"),
    "models": ("models list, 300 entries", "µs CPU / call"),
}
IMPORTS = {
    # Unused features must cost nothing at import: embeddings and images load on first use.
    "routmy": (
        "import routmy_async, sys; "
        "assert 'routmy_async.resources.embeddings' not in sys.modules; "
        "assert 'routmy_async.resources.images' not in sys.modules"
    ),
    "floor": "import aiohttp, msgspec",
    "openai": "import openai",
    "openai-aiohttp": "import openai; from openai import DefaultAioHttpClient",
}
TARGETS = {
    "nonstream": 1.3,
    "stream": 1.5,
    "paced": 1.2,
    "tools": 1.5,
    "models": 1.2,
    "import": 1.3,
    "rss": 1.2,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_worker(
    client: str, workload: str, base_url: str, uvloop: bool, tree: Path | None = None
) -> dict[str, Any]:
    """One (client, workload) run in a fresh process; ``tree``: import routmy_async from there."""
    command = [sys.executable, str(HERE / "_worker.py"), client, workload, base_url]
    if uvloop:
        command.append("--uvloop")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=_env_for(tree)
    )
    if done.returncode != 0:
        raise SystemExit(f"{client}/{workload} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env_for(tree: Path | None) -> dict[str, str] | None:
    if tree is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def import_time(client: str, tree: Path | None = None) -> float:
    code = (
        f"import time; t = time.perf_counter(); {IMPORTS[client]}; print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_env_for(tree),
        # Not the repository root: `python -c` puts the working directory first on sys.path,
        # where it would shadow the tree on PYTHONPATH (an A/B would time B twice).
        cwd=HERE,
    )
    return float(done.stdout.strip())


def compile_package(tree: Path) -> None:
    """Write the package's bytecode, as an install does: without it every run compiles the
    sources again, which costs time and memory (pip's wheels ship none, but pip compiles on
    install; PYTHONDONTWRITEBYTECODE=1 machines never cache it), and both grow with the size
    of the sources, docstrings included, not with what the code does."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "routmy_async")], check=True
    )


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop")
    parser.add_argument("--quick", action="store_true", help="one repetition, no chart")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--render", action="store_true", help="re-render the tables and charts from results*.json"
    )
    parser.add_argument("--ab", metavar="REV", help="interleaved A/B: REV (A) against this tree")
    parser.add_argument("--workloads", default="nonstream,stream,tools", help="with --ab")
    args = parser.parse_args()
    compile_package(HERE.parent)
    if args.ab:
        return ab_main(args.ab, max(args.repeat, 7), args.workloads.split(","), args.uvloop)
    if args.render:
        for path in sorted(HERE.glob("results*.json")):
            stored = json.loads(path.read_text())
            names = list(stored["workloads"]["nonstream"])
            path.with_suffix(".md").write_text(render(stored, names))
            chart(stored, names, path.with_suffix(".png"))
        return 0
    repeat = 1 if args.quick else args.repeat
    clients = args.clients.split(",")

    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "_upstream.py"), "0"], stdout=subprocess.PIPE, text=True
    )
    assert upstream.stdout is not None
    base_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "loop": "uvloop" if args.uvloop else "asyncio",
        "repeat": repeat,
        "workloads": {},
    }
    try:
        for workload in WORKLOADS:
            # Repetitions interleave the clients, so a drift in machine speed (this is a
            # shared VM) hits every client alike instead of biasing the ratios.
            samples: dict[str, list[float]] = {client: [] for client in clients}
            walls: dict[str, list[float]] = {client: [] for client in clients}
            shares: dict[str, list[float]] = {client: [] for client in clients}
            for _ in range(repeat):
                for client in clients:
                    server_before = cpu_seconds(upstream.pid)
                    measured = run_worker(client, workload, base_url, args.uvloop)
                    server_cpu = cpu_seconds(upstream.pid) - server_before
                    samples[client].append(measured["cpu"] / measured["units"] * 1e6)
                    walls[client].append(measured["units"] / measured["wall"])
                    shares[client].append(server_cpu / max(measured["wall"], 1e-9))
            per_client: dict[str, Any] = {}
            for client in clients:
                per_client[client] = {
                    "cpu_us": summary(samples[client]),
                    "per_second": summary(walls[client]),
                    "upstream_cpu_share": summary(shares[client]),
                }
                measured_cpu = per_client[client]["cpu_us"]["median"]
                share = per_client[client]["upstream_cpu_share"]["median"]
                print(
                    f"{workload:>10} {client:>15}: {measured_cpu:9.2f} µs/unit  "
                    f"upstream CPU {share:.0%}",
                    flush=True,
                )
            results["workloads"][workload] = per_client
        for kind in ("import", "create", "rss"):
            values: dict[str, list[float]] = {client: [] for client in clients}
            for _ in range(repeat):
                for client in clients:
                    if kind == "import":
                        values[client].append(import_time(client) * 1e3)
                    elif kind == "create":
                        measured = run_worker(client, "create", base_url, args.uvloop)
                        values[client].append(measured["wall"] / measured["units"] * 1e3)
                    else:
                        measured = run_worker(client, "rss", base_url, args.uvloop)
                        values[client].append(measured["rss_kib"] / 1024)
            results[kind] = {client: summary(values[client]) for client in clients}
            for client in clients:
                print(
                    f"{kind:>10} {client:>15}: {results[kind][client]['median']:9.2f}", flush=True
                )
    finally:
        upstream.terminate()
        upstream.wait()

    suffix = "-uvloop" if args.uvloop else ""
    (HERE / f"results{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results, clients)
    (HERE / f"results{suffix}.md").write_text(table)
    print()
    print(table)
    if not args.quick:
        chart(results, clients, HERE / f"results{suffix}.png")
    return 0


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def ab_main(rev: str, repeat: int, workloads: list[str], uvloop: bool) -> int:
    """Interleaved A/B of the routmy client: git revision ``rev`` (A) against this tree (B)."""
    import tempfile

    root = HERE.parent
    sha = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    trees = {"A": None, "B": root}
    with tempfile.TemporaryDirectory() as scratch:
        tree_a = Path(scratch) / "a"
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(tree_a), sha],
            check=True,
        )
        trees["A"] = tree_a
        compile_package(tree_a)
        upstream = subprocess.Popen(
            [sys.executable, str(HERE / "_upstream.py"), "0"], stdout=subprocess.PIPE, text=True
        )
        assert upstream.stdout is not None
        base_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
        print(f"A = {sha}, B = {head}{' + uncommitted changes' if dirty else ''}", flush=True)
        print(f"{repeat} runs each, alternating A, B in fresh processes", flush=True)
        rows: list[str] = []
        try:
            measures: list[tuple[str, str]] = [(w, WORKLOADS[w][1]) for w in workloads]
            measures += [("import", "ms"), ("rss", "MiB")]
            for name, unit in measures:
                samples: dict[str, list[float]] = {"A": [], "B": []}
                for _ in range(repeat):
                    for side in ("A", "B"):
                        tree = trees[side]
                        if name == "import":
                            samples[side].append(import_time("routmy", tree) * 1e3)
                        elif name == "rss":
                            measured = run_worker("routmy", "rss", base_url, uvloop, tree)
                            samples[side].append(measured["rss_kib"] / 1024)
                        else:
                            measured = run_worker("routmy", name, base_url, uvloop, tree)
                            samples[side].append(measured["cpu"] / measured["units"] * 1e6)
                a = quartiles(samples["A"])
                b = quartiles(samples["B"])
                row = (
                    f"| {name} ({unit}) | {a[1]:.2f} [{a[0]:.2f}-{a[2]:.2f}] "
                    f"| {b[1]:.2f} [{b[0]:.2f}-{b[2]:.2f}] | {b[1] / a[1]:.3f}x |"
                )
                rows.append(row)
                print(row, flush=True)
        finally:
            upstream.terminate()
            upstream.wait()
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(tree_a)],
                check=False,
            )
    print()
    print(f"| measure | A {sha}: median [IQR] | B {head}: median [IQR] | B / A |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


def fmt(value: dict[str, float], digits: int = 1) -> str:
    return f"{value['median']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"


def render(results: dict[str, Any], clients: list[str]) -> str:
    lines = [
        f"Python {results['python']}, {results['loop']} loop, median (min-max) of "
        f"{results['repeat']} runs, each client in a fresh process.",
        "",
        "| workload | unit | " + " | ".join(clients) + " | routmy / floor | target |",
        "|---|---|" + "---|" * len(clients) + "---|---|",
    ]
    for workload, (title, unit) in WORKLOADS.items():
        row = results["workloads"][workload]
        cells = [
            fmt(row[c]["cpu_us"], 2 if row[c]["cpu_us"]["median"] < 10 else 1) for c in clients
        ]
        ratio = ""
        if "routmy" in row and "floor" in row:
            ratio = f"{row['routmy']['cpu_us']['median'] / row['floor']['cpu_us']['median']:.2f}"
        lines.append(
            f"| {title} | {unit} | " + " | ".join(cells) + f" | {ratio} | ≤ {TARGETS[workload]} |"
        )
    for kind, title, unit, target in (
        ("import", "import", "ms", "≤ 1.3"),
        ("create", "client creation", "ms / client", "≤ 2 ms"),
        ("rss", "RSS with a live client", "MiB", "≤ 1.2"),
    ):
        row = results[kind]
        cells = [fmt(row[c], 2) for c in clients]
        ratio = ""
        if "routmy" in row and "floor" in row and kind != "create":
            ratio = f"{row['routmy']['median'] / row['floor']['median']:.2f}"
        elif "routmy" in row:
            ratio = f"{row['routmy']['median']:.3f} ms"
        lines.append(f"| {title} | {unit} | " + " | ".join(cells) + f" | {ratio} | {target} |")
    lines.append("")
    nonstream = results["workloads"]["nonstream"]
    lines.append(
        "Non-streaming throughput (requests/s at concurrency 64): "
        + ", ".join(f"{c} {nonstream[c]['per_second']['median']:.0f}" for c in clients)
        + "."
    )
    highest = {
        w: max(results["workloads"][w][c]["upstream_cpu_share"]["median"] for c in clients)
        for w in WORKLOADS
    }
    shares = ", ".join(f"{w} {share:.0%}" for w, share in highest.items())
    lines.append(
        "The fake upstream's CPU, as a share of one core while a client ran (median, highest "
        f"client): {shares}. Client CPU is measured in the client's own process, so the "
        "upstream's load does not enter the per-unit figures; requests/s are capped by it "
        "only where its share nears 100%."
    )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], clients: list[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')")
        return
    workloads = list(WORKLOADS)
    figure, axis = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(clients)
    for position, client in enumerate(clients):
        ratios = [
            results["workloads"][w][client]["cpu_us"]["median"]
            / results["workloads"][w]["floor"]["cpu_us"]["median"]
            for w in workloads
        ]
        axis.bar([i + position * width for i in range(len(workloads))], ratios, width, label=client)
    axis.set_xticks([i + width * (len(clients) - 1) / 2 for i in range(len(workloads))])
    axis.set_xticklabels(["non-stream", "stream", "paced", "tool calls", "models"])
    axis.set_ylabel("client CPU / floor CPU (lower is better)")
    axis.set_yscale("log")
    axis.axhline(1.0, color="grey", linewidth=0.8)
    axis.set_title(f"CPU per unit relative to raw aiohttp + msgspec ({results['loop']})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"chart written to {path}")


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - started:.0f} s")
    sys.exit(code)
