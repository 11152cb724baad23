"""routmy_async against the raw floor over TLS, next to the same pair over plain HTTP.

    python benchmarks/bench_tls.py [--repeat 5]

W1 is the non-streaming workload (concurrency 64), W2 the streaming one (20 streams of 1,000
chunks), both from ``bench_clients.py``: the same fake upstream (``_upstream.py``) answers
twice, once on plain HTTP and once behind TLS with a certificate made for this run by a
throwaway CA (``trustme``, the dev extra). Both clients trust that CA through
``SSL_CERT_FILE`` and verify the certificate: routmy_async builds its one context from it at
the first request, aiohttp's default context (the floor's) reads it at import. Client CPU is
measured in each client's own process (``_worker.py``), so the server's TLS work does not
count. Writes ``benchmarks/tls-results.json`` and ``benchmarks/tls-results.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_clients import WORKLOADS, run_worker, summary  # noqa: E402

CLIENTS = ["routmy", "floor"]
BENCH_WORKLOADS = {"nonstream": "W1", "stream": "W2"}
TARGET = 1.3


def serve(certfile: str) -> None:
    """The upstream on two ports, plain and TLS; prints both ports."""
    from _upstream import Upstream

    async def main() -> None:
        upstream = Upstream()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile)
        plain = await asyncio.start_server(upstream.serve, "127.0.0.1", 0, backlog=1024)
        tls = await asyncio.start_server(upstream.serve, "127.0.0.1", 0, backlog=1024, ssl=context)
        ports = [server.sockets[0].getsockname()[1] for server in (plain, tls)]
        sys.stdout.write(f"{ports[0]} {ports[1]}\n")
        sys.stdout.flush()
        async with plain, tls:
            await asyncio.gather(plain.serve_forever(), tls.serve_forever())

    asyncio.run(main())


def render(results: dict[str, Any]) -> str:
    lines = [
        f"Python {results['python']}, asyncio loop, median (min-max) of {results['repeat']} runs, "
        "each client in a fresh process; the certificate is verified (a CA made for the run).",
        "",
        "| workload | unit | transport | routmy | floor | routmy / floor | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, name in BENCH_WORKLOADS.items():
        title, unit = WORKLOADS[workload]
        for transport in ("http", "https"):
            cells = results[transport][workload]
            ratio = cells["routmy"]["median"] / cells["floor"]["median"]
            shown = [
                f"{c['median']:.2f} ({c['min']:.2f}-{c['max']:.2f})"
                for c in (cells["routmy"], cells["floor"])
            ]
            lines.append(
                f"| {name}: {title} | {unit} | {transport} | {shown[0]} | {shown[1]} | "
                f"{ratio:.2f} | ≤ {TARGET} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: the upstream process
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    import trustme

    with tempfile.TemporaryDirectory() as scratch:
        ca = trustme.CA()
        ca_file = os.path.join(scratch, "ca.pem")
        server_file = os.path.join(scratch, "server.pem")
        ca.cert_pem.write_to_path(ca_file)
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(server_file)
        # Inherited by every worker: both clients verify against the run's CA.
        os.environ["SSL_CERT_FILE"] = ca_file
        upstream = subprocess.Popen(
            [sys.executable, __file__, "--serve", server_file], stdout=subprocess.PIPE, text=True
        )
        assert upstream.stdout is not None
        plain_port, tls_port = upstream.stdout.readline().split()
        urls = {
            "http": f"http://127.0.0.1:{plain_port}/v1",
            "https": f"https://127.0.0.1:{tls_port}/v1",
        }
        results: dict[str, Any] = {"python": sys.version.split()[0], "repeat": args.repeat}
        try:
            for transport, url in urls.items():
                results[transport] = {}
                for workload in BENCH_WORKLOADS:
                    samples: dict[str, list[float]] = {client: [] for client in CLIENTS}
                    for _ in range(args.repeat):
                        for client in CLIENTS:  # interleaved: machine drift hits both alike
                            measured = run_worker(client, workload, url, False)
                            samples[client].append(measured["cpu"] / measured["units"] * 1e6)
                    results[transport][workload] = {
                        client: summary(samples[client]) for client in CLIENTS
                    }
                    medians = {c: statistics.median(samples[c]) for c in CLIENTS}
                    print(
                        f"{transport:>5} {workload:>9}: routmy {medians['routmy']:8.2f}  "
                        f"floor {medians['floor']:8.2f}  "
                        f"ratio {medians['routmy'] / medians['floor']:.2f}",
                        flush=True,
                    )
        finally:
            upstream.terminate()
            upstream.wait()
    (HERE / "tls-results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "tls-results.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
