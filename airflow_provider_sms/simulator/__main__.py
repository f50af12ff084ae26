"""Serve the simulated gateways until interrupted: ``python -m airflow_provider_sms.simulator``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from airflow_provider_sms.simulator.core import SimConfig
from airflow_provider_sms.simulator.server import ADMIN_TOKEN_ENV, ADMIN_TOKEN_HEADER, GatewaySimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local simulator of the five SMS gateways")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8800)
    parser.add_argument("--https-port", type=int, default=8843, help="cloud_mas (self-signed TLS)")
    parser.add_argument("--report-delay", type=float, default=1.0, help="seconds until a delivery report is due")
    parser.add_argument("--failure-rate", type=float, default=0.05, help="share of numbers that fail delivery")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every vendor reply")
    parser.add_argument("--pull-interval", type=float, default=5.0, help="cloud_mas minimum seconds between pulls")
    parser.add_argument("--env-file", help="also write the AIRFLOW_CONN_* exports to this file once serving")
    parser.add_argument(
        "--admin-token",
        default=None,
        help=f"let /_sim/ admin calls from other hosts in when they send it as {ADMIN_TOKEN_HEADER} "
        f"(default: ${ADMIN_TOKEN_ENV}; without one, only loopback clients may call the admin API)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = SimConfig(
        report_delay=args.report_delay,
        failure_rate=args.failure_rate,
        latency=args.latency,
        pull_interval=args.pull_interval,
    )
    simulator = GatewaySimulator(
        args.host, args.http_port, args.https_port, config, admin_token=args.admin_token
    ).start()
    exports = "".join(
        f"export AIRFLOW_CONN_SMS_{vendor.upper()}='{simulator.demo_connection_json(vendor)}'\n"
        for vendor in simulator.gateway.accounts
    )
    print(exports, end="", flush=True)
    if args.env_file:
        tmp = f"{args.env_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(exports)
        os.replace(tmp, args.env_file)
    print(
        f"serving on {simulator.http_url} and {simulator.https_url} (admin: {simulator.http_url}/_sim/state)",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main()
