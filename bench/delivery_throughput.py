"""Notices per second from the outbox to a loopback aiosmtpd server (not a test; prints a figure).

    .venv/bin/python bench/delivery_throughput.py [--count 1000] [--db URL] [--concurrency 4]

Outcomes are committed as the server answers (at most `concurrency` rows in `sending`), so
the figure includes one short transaction per round of answers.

The database is a fresh SQLite file in a temporary folder, or with `--db` a PostgreSQL server
URL, on which a scratch database is created and dropped. The mail server runs in a separate
process, as a real one would, so it does not compete with the sender for the GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from scratch import scratch_database
from sqlalchemy import insert

from engine.db.models import Notice
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.notices.delivery import SmtpSender, deliver
from engine.settings import SmtpSettings

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


class _Counting:
    """Accepts every message and counts it."""

    def __init__(self, counter: Synchronized[int]) -> None:
        self.counter = counter

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.counter.get_lock():
            self.counter.value += 1
        return "250 OK"


def _serve(port: int, counter: Synchronized[int], ready: Event, stop: Event) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(
        _Counting(counter), hostname="127.0.0.1", port=port, server_hostname="bench"
    )
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def main() -> None:
    """Queue `--count` notices, deliver them to a loopback server, print notices per second."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--db", default=None, help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    load = os.getloadavg()  # other work on the machine takes CPU from both processes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    counter: Synchronized[int] = multiprocessing.Value("i", 0)  # type: ignore[assignment]
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, counter, ready, stop))
    server.start()
    try:
        ready.wait(30)
        with scratch_database("postgresql" if args.db else "sqlite", args.db or "") as url:
            engine = connect(url)
            upgrade(engine)
            with engine.begin() as conn:
                conn.execute(insert(Notice), [_row(i) for i in range(args.count)])
            settings = SmtpSettings(
                host="127.0.0.1", port=port, security="none", concurrency=args.concurrency
            )
            started, cpu_before = time.perf_counter(), time.process_time()
            report = deliver(
                engine,
                SmtpSender(settings, local_hostname="bench.client"),
                now=NOW,
                mail_from="After-sales <service@aftersales.example>",
                batch_size=args.batch_size,
            )
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            dialect = engine.dialect.name
            engine.dispose()
    finally:
        stop.set()
        server.join(10)
    server_cpu = sum(os.times()[2:4])  # the joined server process's user + system time

    if not report.sent == args.count == counter.value:
        raise SystemExit(f"lost or extra messages: {report}, server saw {counter.value}")
    print(
        f"{dialect}: {report.sent} notices in {elapsed:.2f} s = "
        f"{report.sent / elapsed:,.0f} notices/s (concurrency {args.concurrency}, "
        f"read {args.batch_size} at a time)\n"
        f"CPU per notice: sender {cpu / report.sent * 1e3:.2f} ms, "
        f"server {server_cpu / report.sent * 1e3:.2f} ms (including its start-up); "
        f"load average before: {load[0]:.1f} on {os.cpu_count()} CPUs"
    )


def _row(i: int) -> dict[str, object]:
    return {
        "dedup_key": f"bench|{i}",
        "message_id": f"<bench.{i}@aftersales.example>",
        "finding_key": f"bench|{i}",
        "template": "renewal",
        "recipient_role": "customer",
        "recipient_name": f"客户 {i}",
        "recipient_address": f"customer{i}@example.com",
        "locale": "zh-CN",
        "subject": f"维修保养合同到期通知 {i}",
        "body_text": "尊敬的客户：\n\n您的维修保养合同将于2026年12月23日到期。\n" * 5,
        "body_html": "<p>尊敬的客户：</p><p>您的维修保养合同将于2026年12月23日到期。</p>" * 5,
        "status": "pending",
        "attempts": 0,
        "created_at": NOW - timedelta(hours=1),
        "run_id": "bench",
    }


if __name__ == "__main__":
    main()
