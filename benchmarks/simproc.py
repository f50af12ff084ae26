"""The bundled gateway simulator in its own process, plus a small control port for the benchmarks.

Client and server in one process would share one GIL, so every benchmark talks to the simulator in
this separate process over localhost. Next to the simulator's own ``/_sim/`` admin API, the control
port offers what that API has no call for:

* ``POST /fill {"vendor", "count", "per_batch"}``: accept ``count`` messages straight into the
  gateway (no HTTP send per request), with reports due at once, to queue a million delivery reports
  in seconds;
* ``GET /cpu``: this process's CPU seconds, so a run can show how busy the simulator was.

``python -m benchmarks.simproc --ready-file F [--latency S]`` writes ``F`` (JSON: connections, urls,
pid) once serving, and serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_sms.simulator import GatewaySimulator, SimConfig

VENDORS = ("paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas")
#: balance set for every account after a reset: the benchmarks send millions of messages
BALANCE = Decimal(10**9)


def fill(simulator: GatewaySimulator, vendor: str, count: int, per_batch: int, first_batch: int) -> dict[str, Any]:
    """Accept ``count`` numbers (``138`` + 8 digits, counting up) in batches of ``per_batch``.

    Batch ``k`` gets the id ``first_batch + k``, so a store that recorded those sends matches the reports.
    """
    gateway = simulator.gateway
    started = time.perf_counter()
    prefix = "86" if vendor == "intl" else ""
    batches = 0
    for start in range(0, count, per_batch):
        stop = min(start + per_batch, count)
        batch_id = str(first_batch + batches)
        gateway.accept(vendor, batch_id, ((f"{prefix}138{i:08d}", "【Bench】hello") for i in range(start, stop)))
        batches += 1
    return {"vendor": vendor, "count": count, "batches": batches, "seconds": time.perf_counter() - started}


def reset(simulator: GatewaySimulator) -> None:
    """Fresh state, and a fresh garbage collector: collected here, outside any timed run.

    The simulator keeps an object per accepted number, so its collector pauses for 10-80 ms every ~30
    requests of a 100,000-number send. Left uncollected, the previous run's garbage and counters decide
    where the next run's pauses fall, and one of two runs compared back to back could take a pause the
    other did not (single rounds moved by ±0.08). Collected at every reset, each run's pauses come at
    the same requests.
    """
    gateway = simulator.gateway
    gateway.reset()
    with gateway.lock:
        for vendor in gateway.balances:
            gateway.balances[vendor] = BALANCE
    gc.collect()


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def control_server(simulator: GatewaySimulator) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, payload: Any, status: int = 200) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/cpu":
                self._reply({"cpu_seconds": cpu_seconds()})
            else:
                self._reply({"error": f"unknown {self.path}"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            try:
                if self.path == "/fill":
                    result = fill(
                        simulator,
                        payload["vendor"],
                        int(payload["count"]),
                        int(payload.get("per_batch", 1000)),
                        int(payload.get("first_batch", 1)),
                    )
                elif self.path == "/reset":
                    reset(simulator)
                    result = {"ok": True}
                else:
                    self._reply({"error": f"unknown {self.path}"}, 404)
                    return
            except (KeyError, ValueError, TypeError) as exc:
                self._reply({"error": repr(exc)}, 400)
                return
            self._reply(result)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = SimConfig(report_delay=0.0, failure_rate=0.0, latency=args.latency, pull_interval=0.0)
    simulator = GatewaySimulator(config=config).start()
    reset(simulator)
    control = control_server(simulator)
    ready = {
        "pid": os.getpid(),
        "http_url": simulator.http_url,
        "https_url": simulator.https_url,
        "control_url": f"http://127.0.0.1:{control.server_address[1]}",
        "connections": {vendor: simulator.connection_json(vendor) for vendor in VENDORS},
    }
    tmp = f"{args.ready_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(ready, handle)
    os.replace(tmp, args.ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()  # the parent closes it (or dies): stop with it
        stop.set()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    stop.wait()
    control.shutdown()
    simulator.stop()


if __name__ == "__main__":
    main()
