"""The fault run: every fault case of delivery and catch-up, counted letter by letter.

    .venv/bin/python bench/fault_run.py [--db sqlite,postgresql] [--case NAME ...]

Each case sets up a scratch database (a SQLite file, or a PostgreSQL database created and
dropped on the server at AFTERSALES_TEST_PG), a real SMTP server on loopback (aiosmtpd),
injects its fault into real processes (`aftersales deliver` and `aftersales run` as
subprocesses, killed with SIGKILL where the case says so), lets the system recover the way an
operator would (run it again once the fault is gone), and then compares what the mail server
received with what the outbox recorded:

    expected      letters that must reach the server
    received      of those, how many the server accepted (at least once)
    lost          expected but never accepted
    duplicated    accepted more than once (extra copies)
    misrecorded   recorded `sent` but never accepted, or accepted but recorded as not sent
                  (a row that would be sent again), or a letter that reached someone it was
                  not addressed to
    unknown       rows honestly recorded `unknown` (possibly in flight at a kill): not errors

It is not a test: it prints a table and exits 1 when a count that must be zero is not.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from scratch import scratch_database
from sqlalchemy import Engine, insert, select

from engine.db.models import Notice
from engine.db.schema import upgrade
from engine.db.session import connect

ROOT = Path(__file__).resolve().parents[1]
AFTERSALES = str(Path(sys.executable).with_name("aftersales"))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MAIL_FROM = "After-sales <service@aftersales.example>"


# ---------------------------------------------------------------- the mail server


class Handler:
    """Accepts mail and keeps every message; can hold the Nth DATA until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[list[str], bytes]] = []
        self.data_seen = 0
        self.hold_at: int | None = None
        self.holding = threading.Event()  # set while the held DATA waits
        self.release = threading.Event()
        self.reply_delay_s = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_seen += 1
            number = self.data_seen
            # Accepted from the server's side: a client killed now may never hear the 250.
            self.accepted.append((list(envelope.rcpt_tos), envelope.content))
        if number == self.hold_at:
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 60)
        if self.reply_delay_s:
            await asyncio.sleep(self.reply_delay_s)
        return "250 2.0.0 queued"

    def message_ids(self) -> Counter[str]:
        """How often each Message-ID was accepted."""
        with self.lock:
            raw = [content for _, content in self.accepted]
        return Counter(
            str(email.message_from_bytes(m, policy=email.policy.default)["Message-ID"]) for m in raw
        )

    def recipients(self) -> list[list[str]]:
        """The envelope recipients of each accepted message."""
        with self.lock:
            return [rcpt for rcpt, _ in self.accepted]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def mail_server(handler: Handler) -> Iterator[int]:
    """A loopback aiosmtpd with `handler`; yields its port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="faults")
    controller.start()
    try:
        yield port
    finally:
        handler.release.set()
        controller.stop()


# ---------------------------------------------------------------- the outbox


def letter(i: int, *, name: str | None = None, subject: str | None = None) -> dict[str, Any]:
    """An outbox row for customer `i`, as the night queues it."""
    return {
        "dedup_key": f"fault|{i}",
        "message_id": f"<fault.{i}@aftersales.example>",
        "finding_key": f"fault|{i}",
        "template": "renewal",
        "recipient_role": "customer",
        "recipient_name": name or f"Customer {i}",
        "recipient_address": f"customer{i}@example.com",
        "locale": "en",
        "subject": subject or f"Your maintenance contract MC-{1000 + i} ends soon",
        "body_text": "Dear customer,\n\nyour maintenance contract ends on 23 December 2026.\n",
        "body_html": None,
        "status": "pending",
        "attempts": 0,
        "created_at": NOW - timedelta(hours=1),
        "run_id": "fault",
    }


def queue(engine: Engine, rows: list[dict[str, Any]]) -> set[str]:
    """Insert outbox rows; returns their Message-IDs."""
    with engine.begin() as conn:
        conn.execute(insert(Notice), rows)
    return {row["message_id"] for row in rows}


# ---------------------------------------------------------------- processes


@dataclass
class Site:
    """One installation under test: a database, a working folder and a mail server."""

    url: str
    folder: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, **extra: str) -> dict[str, str]:
        """The process environment of an `aftersales` command at this site."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
        env.update(AFTERSALES_DB=self.url, AFTERSALES_OUTBOX_DIR=str(self.folder / "outbox"))
        env["AFTERSALES_ARTIFACTS_DIR"] = str(self.folder / "runs")
        if self.port is not None:
            env.update(
                AFTERSALES_SMTP__HOST="127.0.0.1",
                AFTERSALES_SMTP__PORT=str(self.port),
                AFTERSALES_SMTP__SECURITY="none",
            )
        env.update(self.env)
        env.update(extra)
        return env

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        """Start `aftersales ARGS` in the background."""
        return subprocess.Popen(
            [AFTERSALES, *args],
            cwd=self.folder,
            env=self.environment(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def command(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run `aftersales ARGS` to the end."""
        return subprocess.run(
            [AFTERSALES, *args],
            cwd=self.folder,
            env=self.environment(**extra),
            capture_output=True,
            text=True,
            timeout=600,
        )


@contextmanager
def site(kind: str) -> Iterator[Site]:
    """A fresh installation on a scratch database of `kind`."""
    with scratch_database(kind) as url, tempfile.TemporaryDirectory() as folder:
        engine = connect(url)
        upgrade(engine)
        engine.dispose()
        yield Site(url, Path(folder))


# ---------------------------------------------------------------- counting


@dataclass
class Tally:
    """One case's letters, as the table prints them."""

    case: str
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    misrecorded: int = 0
    unknown: int = 0
    note: str = ""

    @property
    def clean(self) -> bool:
        """True when nothing was lost, duplicated or misrecorded."""
        return self.lost == self.duplicated == self.misrecorded == 0


def count(case: str, url: str, handler: Handler, expected: set[str]) -> Tally:
    """Compare the server's Message-IDs with the outbox's record of `expected` letters."""
    seen = handler.message_ids()
    engine = connect(url)
    with engine.connect() as conn:
        status = dict(conn.execute(select(Notice.message_id, Notice.status)).all())
    engine.dispose()
    tally = Tally(case, expected=len(expected))
    tally.received = sum(1 for mid in expected if seen[mid])
    tally.lost = tally.expected - tally.received
    tally.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    for mid, state in status.items():
        if state == "unknown":
            tally.unknown += 1
        elif (state == "sent") != bool(seen[mid]):
            tally.misrecorded += 1
    # A letter the outbox never wrote, or one copy more than its To (a forged Bcc), went astray.
    tally.misrecorded += sum(n for mid, n in seen.items() if mid not in status)
    tally.misrecorded += sum(len(rcpt) - 1 for rcpt in handler.recipients() if len(rcpt) > 1)
    return tally


Case = Callable[[str], Tally]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    """Register a fault case under `name`."""

    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- the cases


@case("4 SIGKILL mid-batch")
def sigkill_mid_batch(kind: str) -> Tally:
    """A delivery killed with SIGKILL while the server holds its 20th letter; then a rerun."""
    handler = Handler()
    handler.hold_at = 20
    with site(kind) as s, mail_server(handler) as port:
        s.port = port
        engine = connect(s.url)
        expected = queue(engine, [letter(i) for i in range(105)])
        engine.dispose()
        proc = s.start("deliver")
        if not handler.holding.wait(60):
            proc.kill()
            raise SystemExit(f"the delivery never reached the 20th letter: {proc.communicate()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        handler.release.set()
        rerun = s.command("deliver")
        tally = count("4 SIGKILL mid-batch", s.url, handler, expected)
        tally.note = f"rerun exit {rerun.returncode}"
        return tally


def main() -> None:
    """Run the cases on each database and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--case", action="append", help="a case name's prefix, e.g. 4")
    args = parser.parse_args()
    chosen = [name for name in CASES if not args.case or any(name.startswith(p) for p in args.case)]
    failed = False
    for kind in args.db.split(","):
        print(f"\n{kind}")
        print("| case | expected | received | lost | duplicated | misrecorded | unknown | note |")
        print("|---|---|---|---|---|---|---|---|")
        for name in chosen:
            started = time.perf_counter()
            tally = CASES[name](kind)
            failed |= not tally.clean
            print(
                f"| {tally.case} | {tally.expected} | {tally.received} | {tally.lost} | "
                f"{tally.duplicated} | {tally.misrecorded} | {tally.unknown} | "
                f"{tally.note} ({time.perf_counter() - started:.1f} s) |",
                flush=True,
            )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
