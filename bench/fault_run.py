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
    lost          expected, never accepted, and not on a person's list either (a letter whose
                  data was out when its process was killed is `unknown`: listed to operations,
                  who look it up in the server's log; it is not lost, it is in doubt)
    duplicated    accepted more than once (extra copies)
    misrecorded   recorded `sent` but never accepted, or accepted but recorded as not sent
                  (a row that would be sent again), a letter that reached someone it was not
                  addressed to, or a row a transport failure changed
    unknown       rows recorded `unknown`: honest for a letter in flight when its process was
                  killed (at most one per connection); any other is counted as misrecorded

It is not a test: it prints a table and exits 1 when a count that must be zero is not.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import email
import email.policy
import io
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from scratch import scratch_database
from sqlalchemy import Engine, insert, make_url, select

from engine.db.models import Notice
from engine.db.schema import upgrade
from engine.db.session import connect

# aiosmtpd's own chatter (auth without TLS on loopback, a TLS hello on a plain port) is expected.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

ROOT = Path(__file__).resolve().parents[1]
AFTERSALES = str(Path(sys.executable).with_name("aftersales"))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DEMO_AS_OF = "2026-11-23T18:00:00+00:00"
# Outbox states that are no letter of their own: staff items travel inside their digest, and
# rows set aside for a person (no address, a template that cannot render) are not sent.
NOT_LETTERS = {"held", "bundled", "dead", "render_failed"}


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

    def raw(self) -> list[bytes]:
        """Every accepted message as the server received it."""
        with self.lock:
            return [content for _, content in self.accepted]

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
def mail_server(
    handler: Handler, port: int | None = None, login: tuple[str, str] | None = None
) -> Iterator[int]:
    """A loopback aiosmtpd with `handler` (wanting `login` if given); yields its port."""
    port = port or free_port()
    options: dict[str, Any] = {}
    if login is not None:

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any):
            ok = (auth.login.decode(), auth.password.decode()) == login
            return AuthResult(success=ok)

        options = {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="faults", **options
    )
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
        env["AFTERSALES_RULES"] = str(ROOT / "rules")
        env["AFTERSALES_TEMPLATES"] = str(ROOT / "templates" / "notices")
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


def held_delivery(s: Site, handler: Handler, **extra: str) -> subprocess.Popen[str]:
    """`aftersales deliver` started in the background, once the server holds its letter."""
    proc = s.start("deliver", **extra)
    if not handler.holding.wait(60):
        proc.kill()
        raise SystemExit(
            f"the delivery never reached letter {handler.hold_at}: {proc.communicate()}"
        )
    return proc


@contextmanager
def outbox(
    kind: str, handler: Handler, rows: list[dict[str, Any]]
) -> Iterator[tuple[Site, set[str]]]:
    """A fresh installation with `rows` queued and a mail server with `handler`; yields the
    site and the Message-IDs of the letters queued."""
    with site(kind) as s, mail_server(handler) as port:
        s.port = port
        engine = connect(s.url)
        expected = queue(engine, rows)
        engine.dispose()
        yield s, expected


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


def count(
    case: str, url: str, handler: Handler, expected: set[str], *, in_flight: int = 0
) -> Tally:
    """Compare the server's Message-IDs with the outbox's record of `expected` letters.

    `in_flight`: how many letters the case's fault may honestly leave `unknown` (those being
    handed over when a process was killed); any `unknown` beyond that is misrecorded."""
    seen = handler.message_ids()
    engine = connect(url)
    with engine.connect() as conn:
        status = dict(conn.execute(select(Notice.message_id, Notice.status)).all())
    engine.dispose()
    tally = Tally(case, expected=len(expected))
    tally.received = sum(1 for mid in expected if seen[mid])
    in_doubt = sum(1 for mid in expected if status.get(mid) == "unknown" and not seen[mid])
    tally.lost = tally.expected - tally.received - min(in_doubt, in_flight)
    tally.duplicated = sum(n - 1 for n in seen.values() if n > 1)
    for mid, state in status.items():
        if state == "unknown":
            tally.unknown += 1
        elif (state == "sent") != bool(seen[mid]):
            tally.misrecorded += 1
    # A letter the outbox never wrote, or one copy more than its To (a forged Bcc), went astray.
    tally.misrecorded += sum(n for mid, n in seen.items() if mid not in status)
    tally.misrecorded += sum(len(rcpt) - 1 for rcpt in handler.recipients() if len(rcpt) > 1)
    tally.misrecorded += max(0, tally.unknown - in_flight)
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
    with outbox(kind, handler, [letter(i) for i in range(105)]) as (s, expected):
        proc = held_delivery(s, handler)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        handler.release.set()
        rerun = s.command("deliver")
        # One letter per connection can be in flight when the process dies (smtp.concurrency).
        tally = count("4 SIGKILL mid-batch", s.url, handler, expected, in_flight=4)
        arrived = len(unknown_ids(s.url) & handler.message_ids().keys())
        tally.note = (
            f"rerun exit {rerun.returncode}; of the unknown (in flight at the kill), "
            f"{arrived} reached the server"
        )
        return tally


INJECTED = {
    3: "Olivia =?UTF-8?Q?=0D=0ABcc:_evil@attacker.test?= Wright",
    7: "Olivia =?UTF-8?B?DQpCY2M6IGV2aWxAYXR0YWNrZXIudGVzdA==?= Wright",
    11: "Olivia\r\nBcc: evil@attacker.test",
    15: "Olivia\u2028Bcc: evil@attacker.test",
}


@case("1 header injection")
def header_injection(kind: str) -> Tally:
    """Names and subjects that try to add a Bcc header, raw, as encoded words and U+2028."""
    handler = Handler()
    rows = [letter(i, name=INJECTED.get(i), subject=INJECTED.get(i + 1)) for i in range(20)]
    with outbox(kind, handler, rows) as (s, expected):
        done = s.command("deliver")
        tally = count("1 header injection", s.url, handler, expected)
        forged = sum(1 for raw in handler.raw() if b"\nBcc:" in raw or b"\nbcc:" in raw)
        tally.misrecorded += forged
        tally.note = f"exit {done.returncode}, {forged} messages with a Bcc line"
        return tally


@case("5 database locked at outcome write")
def locked_outcomes(kind: str) -> Tally:
    """Another writer locks the outbox for 15 s (past SQLite's 10 s busy timeout) mid-delivery."""
    handler = Handler()
    handler.hold_at = 30
    with outbox(kind, handler, [letter(i) for i in range(105)]) as (s, expected):
        proc = held_delivery(s, handler)
        hold_outbox_lock(s.url, handler.release.set, seconds=15)
        proc.communicate(timeout=600)
        rerun = s.command("deliver")
        tally = count("5 database locked at outcome write", s.url, handler, expected)
        tally.note = f"exit {proc.returncode}, rerun exit {rerun.returncode}"
        return tally


def hold_outbox_lock(url: str, then: Callable[[], None], *, seconds: float) -> None:
    """Lock the outbox against writers for `seconds`, calling `then` once the lock is held."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(url).database, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        then()
        time.sleep(seconds)  # a bench, not a test: the lock must outlast the busy timeout
        conn.execute("COMMIT")
        conn.close()
        return
    engine = connect(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("LOCK TABLE notices IN ACCESS EXCLUSIVE MODE")
        then()
        time.sleep(seconds)
        conn.commit()
    engine.dispose()


def unknown_ids(url: str) -> set[str]:
    """The Message-IDs the outbox holds as `unknown`."""
    engine = connect(url)
    with engine.connect() as conn:
        found = set(conn.scalars(select(Notice.message_id).where(Notice.status == "unknown")))
    engine.dispose()
    return found


def untouched(url: str) -> int:
    """Rows whose status or attempts a transport failure changed (it must change none)."""
    engine = connect(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Notice.status, Notice.attempts)).all()
    engine.dispose()
    return sum(1 for status, attempts in rows if status != "pending" or attempts)


@case("6 mail server down, then up")
def server_down(kind: str) -> Tally:
    """Three deliveries to a closed port (a weekend), then one to the server back up."""
    handler = Handler()
    port = free_port()
    with site(kind) as s:
        s.port = port
        engine = connect(s.url)
        expected = queue(engine, [letter(i) for i in range(105)])
        engine.dispose()
        codes = [s.command("deliver").returncode for _ in range(3)]
        burnt = untouched(s.url)
        with mail_server(handler, port):
            back = s.command("deliver")
        tally = count("6 mail server down, then up", s.url, handler, expected)
        tally.misrecorded += burnt
        tally.note = f"exits while down {codes}, rows changed {burnt}, then exit {back.returncode}"
        return tally


@case("6 wrong password, then right")
def wrong_password(kind: str) -> Tally:
    """The server refuses the login; after the password is fixed everything goes out once."""
    handler = Handler()
    with site(kind) as s, mail_server(handler, login=("aftersales", "right")) as port:
        s.port = port
        s.env["AFTERSALES_SMTP__USERNAME"] = "aftersales"
        engine = connect(s.url)
        expected = queue(engine, [letter(i) for i in range(105)])
        engine.dispose()
        wrong = s.command("deliver", AFTERSALES_SMTP__PASSWORD="wrong")
        burnt = untouched(s.url)
        right = s.command("deliver", AFTERSALES_SMTP__PASSWORD="right")
        tally = count("6 wrong password, then right", s.url, handler, expected)
        tally.misrecorded += burnt
        tally.note = f"exit {wrong.returncode}, rows changed {burnt}, then exit {right.returncode}"
        return tally


@case("7 TLS mode against a plain port")
def tls_against_plain_port(kind: str) -> Tally:
    """`security = tls` aimed at a server that speaks plain SMTP, then the setting fixed."""
    handler = Handler()
    with outbox(kind, handler, [letter(i) for i in range(105)]) as (s, expected):
        check = s.command("deliver", "--check", AFTERSALES_SMTP__SECURITY="tls")
        wrong = s.command("deliver", AFTERSALES_SMTP__SECURITY="tls")
        burnt = untouched(s.url)
        right = s.command("deliver")
        tally = count("7 TLS mode against a plain port", s.url, handler, expected)
        tally.misrecorded += burnt
        tally.note = (
            f"--check exit {check.returncode}, deliver exit {wrong.returncode}, "
            f"rows changed {burnt}, fixed: exit {right.returncode}"
        )
        return tally


@case("8 run lock through another path")
def lock_through_symlink(kind: str) -> Tally:
    """While one delivery works, a second one and an import reach the database another way."""
    handler = Handler()
    handler.hold_at = 10
    with outbox(kind, handler, [letter(i) for i in range(105)]) as (s, expected):
        other = other_spelling(s)
        first = held_delivery(s, handler)
        second = s.command("deliver", AFTERSALES_DB=other)
        (s.folder / "feed").mkdir()
        (s.folder / "feed" / "branches.csv").write_text(
            "code,name,timezone,country,locale\nFB-01,Fault branch,Europe/Madrid,ES,es\n"
        )
        imported = s.command("import", str(s.folder / "feed"), AFTERSALES_DB=other)
        handler.release.set()
        first.communicate(timeout=600)
        tally = count("8 run lock through another path", s.url, handler, expected)
        tally.misrecorded += sum(1 for p in (second, imported) if p.returncode != 3)
        tally.note = (
            f"second deliver exit {second.returncode}, import exit {imported.returncode} "
            f"(3 = locked), first exit {first.returncode}"
        )
        return tally


def other_spelling(s: Site) -> str:
    """The same database by another name: a symlink for SQLite, `localhost` for PostgreSQL."""
    url = make_url(s.url)
    if url.drivername.startswith("sqlite"):
        link = s.folder / "link.db"
        link.symlink_to(url.database)
        return f"sqlite:///{link}"
    return url.set(host="localhost").render_as_string(hide_password=False)


@case("3 runaway template in a night")
def runaway_template(kind: str) -> Tally:
    """A demo night whose complaint acknowledgement template loops for ever."""
    handler = Handler()
    with site(kind) as s, mail_server(handler) as port:
        s.port = port
        s.command("init", "--demo", "--as-of", DEMO_AS_OF)
        templates = s.folder / "templates"
        shutil.copytree(ROOT / "templates" / "notices", templates)
        loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        for body in (templates / "complaint_received").glob("*.txt.j2"):
            body.write_text(loop + body.read_text(encoding="utf-8"), encoding="utf-8")
        night = s.start("run", "--as-of", DEMO_AS_OF, "--templates", str(templates))
        try:
            night.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            night.kill()
            night.communicate()
        engine = connect(s.url)
        with engine.connect() as conn:
            rows = conn.execute(select(Notice.message_id, Notice.status)).all()
        engine.dispose()
        expected = {mid for mid, status in rows if status not in NOT_LETTERS}
        refused = sum(1 for _, status in rows if status == "render_failed")
        tally = count("3 runaway template in a night", s.url, handler, expected)
        tally.expected = max(tally.expected, 1)  # a night that hangs queues nothing at all
        tally.lost = tally.expected - tally.received
        tally.note = f"run exit {night.returncode}, {refused} notices render_failed"
        return tally


@case("9 slow final reply")
def slow_final_reply(kind: str) -> Tally:
    """The server takes 4 s to answer one DATA; the command timeout is 1 s."""
    handler = Handler()
    handler.hold_at = 10
    with outbox(kind, handler, [letter(i) for i in range(40)]) as (s, expected):
        proc = held_delivery(s, handler, AFTERSALES_SMTP__TIMEOUT_S="1")
        threading.Timer(4, handler.release.set).start()
        proc.communicate(timeout=600)
        tally = count("9 slow final reply", s.url, handler, expected)
        tally.note = f"exit {proc.returncode}"
        return tally


# ---------------------------------------------------------------- nights missed


def twin_nights(
    kind: str,
    name: str,
    demo_as_of: datetime,
    every_day: list[datetime],
    after_downtime: list[datetime],
    *,
    templates: set[str] | None = None,
) -> Tally:
    """Two demo departments built alike: one runs on `every_day`, the other on
    `after_downtime` only. Every notice the first queued for a finding (or, with `templates`,
    every notice of those templates) must be queued by the second too, and go out."""
    outboxes: list[dict[str, str]] = []
    for nights in (every_day, after_downtime):
        handler = Handler()
        with site(kind) as s, mail_server(handler) as port:
            s.port = port
            s.command("init", "--demo", "--as-of", demo_as_of.isoformat())
            for as_of in nights:
                done = s.command("run", "--as-of", as_of.isoformat())
                if done.returncode:
                    raise SystemExit(f"{name}: the night at {as_of} failed:\n{done.stdout}")
            outboxes.append(finding_notices(s.url, templates))
            if nights is after_downtime:
                tally = count(name, s.url, handler, set())
    every, once = outboxes
    # Letters set aside on both sides alike (a customer without an address) are not expected.
    wanted = {key for key, state in every.items() if state in GONE_OUT}
    got = {key for key, state in once.items() if state in GONE_OUT}
    tally.expected = len(wanted)
    tally.received = len(wanted & got)
    tally.lost = tally.expected - tally.received
    tally.misrecorded += len(once.keys() - every.keys())
    tally.note = f"{len(every_day)} nights vs {len(after_downtime)}; notices compared by key"
    return tally


# A notice has gone out when it was sent, or when it went out inside a digest that was.
GONE_OUT = {"sent", "bundled"}


def finding_notices(url: str, templates: set[str] | None) -> dict[str, str]:
    """dedup key -> status of the notices that answer findings (or are of `templates`).

    Digests (one per reader and night) and overdue summaries (what is late on the night it goes
    out) belong to a night, not to a finding: a night that did not happen has none."""
    engine = connect(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Notice.dedup_key, Notice.template, Notice.status)).all()
    engine.dispose()
    if templates is not None:
        return {key: status for key, template, status in rows if template in templates}
    return {
        key: status
        for key, template, status in rows
        if template not in ("digest", "overdue_summary", "kpi_report")
    }


SHANGHAI = ZoneInfo("Asia/Shanghai")


@case("10 monthly close missed by a month")
def missed_close(kind: str) -> Tally:
    """September's close (10 October) falls in a month the host is down."""
    first, close, late = (
        datetime(2026, m, d, 10, tzinfo=SHANGHAI) for m, d in [(10, 9), (10, 10), (11, 11)]
    )
    return twin_nights(
        kind,
        "10 monthly close missed by a month",
        first,
        [first, close, late],
        [first, late],
        templates={"reward_penalty_notice", "penalty_summary"},
    )


@case("11 deadlines run late while down")
def deadlines_while_down(kind: str) -> Tally:
    """Four nights before the demo's instant: every night, or the first and the last only."""
    demo = datetime.fromisoformat(DEMO_AS_OF)
    nights = [demo - timedelta(days=n) for n in range(4, -1, -1)]
    return twin_nights(
        kind, "11 deadlines run late while down", demo, nights, [nights[0], nights[-1]]
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@case("2 formulas in mailed CSV files")
def csv_formulas(kind: str) -> Tally:
    """Staff and customers named like formulas; the night's CSV attachments must not run them."""
    handler = Handler()
    with site(kind) as s, mail_server(handler) as port:
        s.port = port
        s.command("init", "--demo", "--as-of", "2026-10-10T18:00:00+00:00")
        engine = connect(s.url)
        with engine.begin() as conn:
            for table in ("staff", "customers"):
                conn.exec_driver_sql(
                    f"UPDATE {table} SET name = CASE MOD(id, 4) WHEN 0 THEN '=HYPERLINK(\"x\")' "
                    "WHEN 1 THEN '+1+' || name WHEN 2 THEN '@SUM(1)' ELSE '-2+' || name END"
                )
        engine.dispose()
        s.command("run", "--as-of", "2026-10-10T18:00:00+00:00")
        engine = connect(s.url)
        with engine.connect() as conn:
            rows = conn.execute(select(Notice.message_id, Notice.status)).all()
        engine.dispose()
        expected = {mid for mid, status in rows if status not in NOT_LETTERS}
        tally = count("2 formulas in mailed CSV files", s.url, handler, expected)
        files, live = 0, 0
        for raw in handler.raw():
            message = email.message_from_bytes(raw, policy=email.policy.default)
            for part in message.iter_attachments():
                if part.get_content_type() != "text/csv":
                    continue
                files += 1
                text = part.get_payload(decode=True).decode("utf-8-sig")
                live += sum(
                    1
                    for row in csv.reader(io.StringIO(text))
                    for cell in row
                    if cell.startswith(FORMULA_STARTS) and not _number(cell)
                )
        tally.misrecorded += live
        tally.note = f"{files} CSV files mailed, {live} cells a spreadsheet would run"
        return tally


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@case("12 scheduler across clock changes")
def scheduler_across_clock_changes(kind: str) -> Tally:
    """`aftersales schedule` every 15 minutes, a Madrid branch's digests at 02:30, simulated
    over both clock changes of 2026/27.

    02:30 does not exist on 28 March 2027 (the digests go at 03:00, the first instant after
    the gap) and occurs twice on 25 October 2026 (they go once, at the first)."""
    from engine.due_parts import due_parts, mark_done
    from engine.policy.schedule_spec import ScheduleSpec
    from engine.scheduler import CycleLoop

    zone, schedule = ZoneInfo("Europe/Madrid"), ScheduleSpec(digests="02:30")
    tally = Tally("12 scheduler across clock changes")
    with site(kind) as s:
        engine = connect(s.url)
        for first in (date(2026, 10, 22), date(2027, 3, 25)):
            days = [first + timedelta(days=n) for n in range(8)]
            done: list[tuple[str, datetime]] = []
            with engine.begin() as conn:  # the day before was done: no catch-up at start
                before = wall_clock(first - timedelta(days=1), zone)
                yesterday = due_parts(conn, schedule, {1: zone.key}, "UTC", before, close_on_day=10)
                mark_done(conn, yesterday, "fault-before", ["digests"])

            def cycle(as_of: datetime, done: list[tuple[str, datetime]] = done) -> None:
                with engine.begin() as conn:
                    due = due_parts(conn, schedule, {1: zone.key}, "UTC", as_of, close_on_day=10)
                    mine = [i for i in due.items if (i.part, i.scope) == ("digests", "1")]
                    done.extend((i.period, as_of) for i in mine)
                    mark_done(conn, due, f"fault-{as_of:%Y%m%dT%H%M}", ["digests"])

            now = [datetime.combine(first, dt_time(2, 0), zone).astimezone(UTC)]
            end = datetime.combine(days[-1], dt_time(12, 0), zone).astimezone(UTC)
            loop = CycleLoop(cycle, every=timedelta(minutes=15), clock=lambda now=now: now[0])
            loop.wait = partial(simulated_wait, now, end, loop.stop)
            loop.serve()
            per_day = Counter(period for period, _ in done)
            tally.expected += len(days)
            tally.received += sum(1 for day in days if per_day[day.isoformat()])
            tally.duplicated += sum(n - 1 for n in per_day.values() if n > 1)
            tally.misrecorded += sum(1 for day in per_day if day not in map(str, days))
            tally.misrecorded += sum(
                1 for period, at in done if at != wall_clock(date.fromisoformat(period), zone)
            )
        engine.dispose()
    tally.lost = tally.expected - tally.received
    tally.note = "digests, not letters: one a local day at 02:30 (03:00 on 28 March)"
    return tally


def simulated_wait(
    now: list[datetime], end: datetime, stop: threading.Event, seconds: float
) -> None:
    """Let `seconds` pass on the simulated clock `now[0]`; stop the loop at `end`."""
    now[0] += timedelta(seconds=seconds)
    if now[0] >= end:
        stop.set()


def wall_clock(day: date, zone: ZoneInfo) -> datetime:
    """When 02:30 comes on `day` in `zone`: its first occurrence, or 03:00 if it is skipped."""
    first = datetime.combine(day, dt_time(2, 30), zone)
    if first.astimezone(UTC).astimezone(zone).time() != dt_time(2, 30):
        first = datetime.combine(day, dt_time(3, 0), zone)
    return first.astimezone(UTC)


def main() -> None:
    """Run the cases on each database and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--case", action="append", help="a case's number, e.g. 4 (repeat for more)")
    args = parser.parse_args()
    chosen = sorted(
        (name for name in CASES if not args.case or name.split()[0] in args.case),
        key=lambda name: int(name.split()[0]),
    )
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
