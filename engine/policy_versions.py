"""Where a policy to compare with comes from: a folder, a git revision of the rules folder, or
the text the last successful run judged with (kept in `policy_versions` by every run)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, select

from engine.db.models import PolicyVersion, Run
from engine.errors import PolicyError, UsageError
from engine.notices.templates import NoticeTemplates
from engine.policy import Policy, load_policy


def keep_version(conn: Connection, policy: Policy) -> None:
    """Store the policy's files' text and rule digests under its hash, unless a run already
    did (a version kept before digests were gets them now)."""
    table = PolicyVersion.__table__
    kept = conn.execute(select(PolicyVersion.rules).where(PolicyVersion.hash == policy.hash))
    row = kept.first()
    if row is not None:
        if row.rules is None:
            conn.execute(
                table.update().where(table.c.hash == policy.hash).values(rules=policy.digests)
            )
        return
    files = {path.name: path.read_text(encoding="utf-8") for path in policy.files}
    conn.execute(
        table.insert().values(
            hash=policy.hash, files=files, rules=policy.digests, recorded_at=datetime.now(UTC)
        )
    )


def last_run_files(conn: Connection) -> tuple[str, dict[str, str]]:
    """The hash and files of the policy the last successful run judged with."""
    last = conn.scalar(
        select(Run.policy_hash)
        .where(Run.outcome == "success")
        .order_by(Run.started_at.desc())
        .limit(1)
    )
    if last is None:
        raise UsageError("no successful run to compare with; pass --against DIR or a revision")
    files = conn.scalar(select(PolicyVersion.files).where(PolicyVersion.hash == last))
    if files is None:
        raise UsageError(
            f"the last successful run's policy ({last}) was not kept (a run before this "
            "version); pass --against DIR or a revision"
        )
    return last, files


def git_files(rules: Path, revision: str) -> dict[str, str]:
    """The policy files of the rules folder as they were at a git revision."""
    folder = rules.resolve()
    prefix = _git(folder, "rev-parse", "--show-prefix").strip()
    # --full-tree: run inside the folder, ls-tree would list only what lies under it again.
    names = _git(folder, "ls-tree", "--full-tree", "--name-only", f"{revision}:{prefix}").split(
        "\n"
    )
    wanted = [n for n in names if n.endswith((".yaml", ".yml"))]
    return {n: _git(folder, "show", f"{revision}:{prefix}{n}") for n in wanted}


def write_folder(files: Mapping[str, str], folder: Path) -> Path:
    """Write the files into `folder`, to load them as a policy; returns it."""
    for name, text in files.items():
        (folder / Path(name).name).write_text(text, encoding="utf-8")
    return folder


def _git(folder: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, encoding="utf-8", check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        why = getattr(exc, "stderr", "") or str(exc)
        raise UsageError(f"--against: neither a folder nor a git revision: {why.strip()}") from exc
    return done.stdout


def load_side(folder: Path, templates: NoticeTemplates, name: str) -> Policy:
    """Load one side of a comparison; its problems, if any, say which side they are."""
    try:
        return load_policy(folder, templates)
    except PolicyError as exc:
        exc.args = (f"{name}: {exc}",)
        raise


def against_policy(
    engine: Engine, rules: Path, against: str | None, templates: NoticeTemplates
) -> tuple[Policy, str, Path | None]:
    """The policy to compare with, how to name it, and its folder when it is one that lasts:
    `against` as a folder, else as a git revision of `rules`; by default the last successful
    run's."""
    if against is not None and Path(against).is_dir():
        return load_side(Path(against), templates, against), against, Path(against)
    if against is not None:
        files, name = git_files(rules, against), f"revision {against}"
    else:
        with engine.connect() as conn:
            _, files = last_run_files(conn)
        name = "the last successful run's policy"
    with tempfile.TemporaryDirectory(prefix="aftersales-policy-") as folder:
        return load_side(write_folder(files, Path(folder)), templates, name), name, None
