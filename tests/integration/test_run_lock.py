"""The run lock holds whatever name reaches the database, and `import` takes it too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from engine.db.importer import import_dir
from engine.db.lock import run_lock
from engine.db.models import Branch
from engine.db.schema import upgrade
from engine.db.session import connect
from engine.errors import RunLocked

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("aftersales"))
BRANCH_CSV = "code,name,timezone,country,locale\nFB-01,Fault branch,Europe/Madrid,ES,es\n"


def aftersales(url: str, tmp_path: Path, *args: str, cwd: Path | None = None):
    """Run the real command on the database at `url`; returns the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFTERSALES_")}
    env |= {
        "AFTERSALES_DB": url,
        "AFTERSALES_RULES": str(ROOT / "rules"),
        "AFTERSALES_TEMPLATES": str(ROOT / "templates" / "notices"),
        "AFTERSALES_ARTIFACTS_DIR": str(tmp_path / "runs"),
        "AFTERSALES_OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    return subprocess.run(
        [EXE, *args], env=env, cwd=cwd or tmp_path, capture_output=True, text=True, timeout=120
    )


def feed(tmp_path: Path) -> Path:
    """A folder with one branch to import."""
    folder = tmp_path / "feed"
    folder.mkdir(exist_ok=True)
    (folder / "branches.csv").write_text(BRANCH_CSV)
    return folder


def branches(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Branch)) or 0


@pytest.fixture
def service_db(tmp_path: Path) -> Engine:
    """A SQLite database with the current schema at tmp/data/service.db."""
    (tmp_path / "data").mkdir()
    engine = connect(f"sqlite:///{tmp_path / 'data' / 'service.db'}")
    upgrade(engine)
    return engine


def through_symlink(tmp_path: Path) -> str:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.db").symlink_to(tmp_path / "data" / "service.db")
    return f"sqlite:///{tmp_path / 'elsewhere' / 'link.db'}"


def through_relative_path(_tmp_path: Path) -> str:
    return "sqlite:///./data/../data/service.db"  # the commands run in tmp_path


def through_symlinked_folder(tmp_path: Path) -> str:
    (tmp_path / "alias").symlink_to(tmp_path / "data", target_is_directory=True)
    return "sqlite:///alias/service.db"


@pytest.mark.parametrize(
    "other_name", [through_symlink, through_relative_path, through_symlinked_folder]
)
@pytest.mark.slow
def test_a_delivery_and_an_import_by_another_name_of_the_file_exit_3_while_the_lock_is_held(
    service_db: Engine, tmp_path: Path, other_name: Callable[[Path], str]
) -> None:
    other = other_name(tmp_path)
    with run_lock(service_db):
        delivery = aftersales(other, tmp_path, "deliver")
        imported = aftersales(other, tmp_path, "import", str(feed(tmp_path)))
    for locked in (delivery, imported):
        assert locked.returncode == 3, locked.stderr
        assert "another aftersales run, delivery or import is working on" in locked.stderr
        assert os.path.realpath(tmp_path / "data" / "service.db") in locked.stderr  # the real file
    assert branches(service_db) == 0
    # Free again, the same names work: it was the lock that stopped them.
    assert aftersales(other, tmp_path, "deliver").returncode == 0
    assert aftersales(other, tmp_path, "import", str(feed(tmp_path))).returncode == 0
    assert branches(service_db) == 1


def test_a_night_through_a_symlink_exits_3_while_a_delivery_holds_the_real_file(
    service_db: Engine, tmp_path: Path
) -> None:
    other = through_symlink(tmp_path)
    with run_lock(service_db):
        night = aftersales(other, tmp_path, "run", "--as-of", "2026-11-23T18:00:00Z")
    assert night.returncode == 3, night.stderr
    assert "another aftersales run" in night.stderr


def test_import_waits_for_nobody_and_changes_nothing_while_a_run_holds_the_lock(
    db: Engine, tmp_path: Path
) -> None:
    url = make_url(db.url.render_as_string(hide_password=False))
    if url.get_backend_name() == "postgresql":
        other = url.set(host="localhost" if url.host != "localhost" else "127.0.0.1")
        other_url = other.render_as_string(hide_password=False)
    else:
        link = tmp_path / "link.db"
        link.symlink_to(url.database)
        other_url = f"sqlite:///{link}"
    with run_lock(db):
        imported = aftersales(other_url, tmp_path, "import", str(feed(tmp_path)))
    assert imported.returncode == 3, imported.stderr
    assert "another aftersales run, delivery or import" in imported.stderr
    assert branches(db) == 0
    assert aftersales(other_url, tmp_path, "import", str(feed(tmp_path))).returncode == 0
    assert branches(db) == 1


def test_an_import_inside_a_held_lock_goes_on_and_one_from_another_thread_is_turned_away(
    db: Engine, tmp_path: Path
) -> None:
    refused: list[RunLocked] = []

    def import_elsewhere() -> None:
        try:
            import_dir(db, feed(tmp_path))
        except RunLocked as exc:
            refused.append(exc)

    with run_lock(db):
        other = threading.Thread(target=import_elsewhere)
        other.start()
        other.join()
        assert import_dir(db, feed(tmp_path)) == {"branches": 1}  # no deadlock on itself
    assert len(refused) == 1
    assert branches(db) == 1
    with run_lock(db):  # released at the end of the outer hold, not the inner one
        pass


def test_a_database_with_two_hard_links_is_refused_not_run_twice(
    service_db: Engine, tmp_path: Path
) -> None:
    real = tmp_path / "data" / "service.db"
    os.link(real, tmp_path / "hard.db")
    delivery = aftersales(f"sqlite:///{tmp_path / 'hard.db'}", tmp_path, "deliver")
    assert delivery.returncode == 2, delivery.stderr
    assert "has 2 names (hard links)" in delivery.stderr
    assert "symbolic link" in delivery.stderr
