"""Notice templates: one folder per notice, `<locale>.subject.j2`, `.txt.j2`, optional `.html.j2`.

Rendering is sandboxed (operations staff edit these files) and strict: an undefined variable
is an error, never a blank in a customer's letter. Dates, money and numbers are formatted with
Babel in the reader's locale and the branch's time zone.

Rendering is also bounded (`RenderLimits`): a letter that takes longer than `max_seconds` or
grows past `max_chars` stops with RenderLimitExceeded naming the template file and line.
Repetition with `*`, `**` and `+` is checked before the result is made, so `'x' * 10**10`
allocates nothing; loops are stopped by SIGALRM on the main thread (where commands render) and
by a clock read between output chunks elsewhere. `cost_problems` finds what is runaway without
data (constant loops and repetitions) for `validate`.
"""

from __future__ import annotations

import operator
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, get_timezone_location
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import (
    FileSystemBytecodeCache,
    FileSystemLoader,
    StrictUndefined,
    Template,
    nodes,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from engine.errors import AftersalesError, Location, PolicyError, Problem
from engine.findings import base_state

PARTS = ("subject", "txt", "html")
REQUIRED_PARTS = ("subject", "txt")
_FILE = re.compile(r"^(?P<locale>[a-z]{2}(?:-[A-Z]{2})?)\.(?P<part>subject|txt|html)\.j2$")


@dataclass(frozen=True)
class RenderLimits:
    """How long one letter may take to render, and how large it may grow (all parts together)."""

    max_seconds: float = 2.0
    max_chars: int = 1_000_000


class RenderLimitExceeded(AftersalesError):
    """A template ran past a render limit; `location` is its file and line."""

    def __init__(self, message: str, location: Location):
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}")


class _OverLimit(Exception):
    """Raised inside a rendering (so Jinja points at the template line), then translated."""


class _OutOfTime(_OverLimit):
    """The rendering's time ran out: the template is refused for the rest of the run."""


# Integers past this many bits are not something a letter prints (Python 3.11 refuses to
# print more than 4,300 digits anyway), and making one can take minutes in a single step.
_MAX_INT_BITS = 1 << 16
# A loop nest whose constant ranges multiply past this runs for seconds even printing nothing.
_MAX_STATIC_ITERATIONS = 10_000_000


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """A notice ready for the outbox."""

    locale: str
    subject: str
    text: str
    html: str | None


@lru_cache(maxsize=64)
def _parsed_locale(tag: str) -> Locale:
    # Parsing walks Babel's locale data files: at a million letters a night it dominated.
    return Locale.parse(tag, sep="-")


def _babel_locale(ctx: Context) -> Locale:
    return _parsed_locale(ctx["locale"])


def _given(value: Any, what: str) -> Any:
    # Babel reads None as "now": an empty field would print today's date in a letter.
    if value is None:
        raise ValueError(f"the {what} to format is empty; test it with `is none` first")
    return value


@pass_context
def _date(ctx: Context, value: date | datetime, format: str = "long") -> str:
    if isinstance(_given(value, "date"), datetime):
        value = value.astimezone(ZoneInfo(ctx["timezone"])).date()
    return format_date(value, format=format, locale=_babel_locale(ctx))


@pass_context
def _datetime(ctx: Context, value: datetime, format: str = "medium") -> str:
    tz = ZoneInfo(ctx["timezone"])
    stamp = _given(value, "timestamp")
    return format_datetime(stamp, format=format, tzinfo=tz, locale=_babel_locale(ctx))


@pass_context
def _zone(ctx: Context, name: str) -> str:
    # How a reader names a time zone, to label the local times shown: 中国（上海）时间, hora de
    # España (Madrid). UTC has no place to name (Babel says "Unknown Region").
    if name in ("UTC", "Etc/UTC"):
        return "UTC"
    return get_timezone_location(name, locale=_babel_locale(ctx))


@pass_context
def _money(ctx: Context, amount: Decimal | int, currency: str) -> str:
    return format_currency(Decimal(_given(amount, "amount")), currency, locale=_babel_locale(ctx))


@pass_context
def _number(ctx: Context, value: Decimal | int | float) -> str:
    return format_decimal(_given(value, "number"), locale=_babel_locale(ctx))


@pass_context
def _percent(ctx: Context, value: Decimal | float, format: str = "#,##0.#%") -> str:
    # A share held as a fraction (0.953) reads as a percentage in the reader's style.
    return format_percent(_given(value, "share"), format, locale=_babel_locale(ctx))


# How the seed documents' parts and articles are cited in each language; English as written.
_CITED = {
    "zh-CN": ("第{n}部分", "第{n}条"),
    "zh-TW": ("第{n}部分", "第{n}條"),
    "es": ("parte {n}", "art. {n}"),
}
_PART = re.compile(r"\bpart (\d+)")
_ARTICLE = re.compile(r"\bart\.\s*(\d+(?:-\d+)?)")


@pass_context
def _citation(ctx: Context, source: str) -> str:
    """A rule's `source` ("000 part 2 §2(3)", "000 art.14") cited in the reader's language."""
    words = _CITED.get(ctx["locale"])
    if words is None:
        return source
    part, article = words
    cited = _PART.sub(lambda m: part.format(n=m[1]), source)
    return _ARTICLE.sub(lambda m: article.format(n=m[1]), cited)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, refusing a repetition or power whose result would pass the render limits."""

    intercepted_binops = frozenset(("*", "**", "+"))

    def __init__(self, max_chars: int, **options: Any):
        super().__init__(**options)
        self.max_chars = max_chars

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Check the size of `left <operator> right` from its operands, then compute it."""
        problem = _oversized(operator, left, right, self.max_chars)
        if problem:
            raise _OverLimit(problem)
        return super().call_binop(context, operator, left, right)


_SEQUENCE = (str, list, tuple, bytes)


def _oversized(op: str, left: Any, right: Any, max_chars: int) -> str | None:
    """Why `left op right` is too large to make, or None; decided without making it."""
    if op == "*":
        if isinstance(left, int) and isinstance(right, _SEQUENCE):
            left, right = right, left
        if isinstance(left, _SEQUENCE) and isinstance(right, int):
            size = len(left) * right
            if size > max_chars:
                return f"repeats to {size:,} items, over the limit of {max_chars:,} characters"
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > _MAX_INT_BITS
        ):
            return "multiplies to a number too large to print"
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(left.bit_length() - 1, 0) * right > _MAX_INT_BITS:
            return "raises to a number too large to print"
    elif op == "+" and isinstance(left, _SEQUENCE) and isinstance(right, _SEQUENCE):
        size = len(left) + len(right)
        if size > max_chars:
            return f"joins to {size:,} items, over the limit of {max_chars:,} characters"
    return None


_COMPILED = FileSystemBytecodeCache(pattern="__aftersales_bounded_%s.cache")
"""Compiled templates kept between runs, in the user's own temporary folder (Jinja's, private
to the user), under a name of our own: every cycle checks every template of the policy, and
compiling them all again would cost it most of a second. A cached entry is used only for the
same source text; the name keeps other Jinja users' code (no bounded operators) apart."""


class NoticeTemplates:
    """The notice templates under one folder, with a locale fallback chain."""

    def __init__(
        self, folder: Path, default_locale: str = "en", limits: RenderLimits = RenderLimits()
    ):
        self.folder = folder
        self.default_locale = default_locale
        self.limits = limits
        self.env = _BoundedEnvironment(
            limits.max_chars,
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
            # One command reads the templates once: no stat() of every file at every render.
            auto_reload=False,
            bytecode_cache=_COMPILED,
        )
        self.env.filters.update(
            date=_date,
            datetime=_datetime,
            money=_money,
            number=_number,
            percent=_percent,
            zone=_zone,  # `timezone|zone`: the zone's name in the reader's language
            citation=_citation,
            base_state=base_state,  # `breach:repeat-2`|base_state is `breach`
        )
        self._files = self._scan()
        # name -> the first context rendered with it; set to a dict to collect (preview does).
        self.samples: dict[str, dict[str, Any]] | None = None
        # Loader path -> why it cannot be rendered at all (a runaway found without data, or a
        # time-out): later letters fail at once instead of waiting out the clock again.
        self._refused: dict[str, RenderLimitExceeded | None] = {}

    def _scan(self) -> dict[str, dict[str, set[str]]]:
        found: dict[str, dict[str, set[str]]] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*/*.j2")):
            match = _FILE.match(path.name)
            if match and not path.parent.name.startswith("_"):
                parts = found.setdefault(path.parent.name, {}).setdefault(match["locale"], set())
                parts.add(match["part"])
        return found

    def names(self) -> set[str]:
        """Every notice that has at least one complete locale."""
        return {name for name in self._files if self.locales(name)}

    def locales(self, name: str) -> set[str]:
        """The locales in which `name` has a subject and a plain-text body."""
        by_locale = self._files.get(name, {})
        return {loc for loc, parts in by_locale.items() if set(REQUIRED_PARTS) <= parts}

    def pick_locale(self, name: str, wanted: str | None) -> str | None:
        """The reader's locale, else the same language, else the default, else any."""
        have = self.locales(name)
        if not have:
            return None
        language = (wanted or "").split("-")[0]
        chain = [wanted, *sorted(loc for loc in have if loc.split("-")[0] == language)]
        chain += [self.default_locale, *sorted(have)]
        return next(loc for loc in chain if loc in have)

    def paths(self, name: str, locale: str) -> dict[str, str]:
        """Loader names of the parts present for one notice and locale."""
        present = self._files.get(name, {}).get(locale, set())
        return {part: f"{name}/{locale}.{part}.j2" for part in PARTS if part in present}

    def render(
        self, name: str, wanted_locale: str | None, context: dict[str, Any]
    ) -> RenderedNotice:
        """Render every part of notice `name` for a reader who reads `wanted_locale`."""
        locale = self.pick_locale(name, wanted_locale)
        if locale is None:
            raise LookupError(f"no template for notice {name!r} in {self.folder}")
        if self.samples is not None:
            self.samples.setdefault(name, context)
        values = {"timezone": "UTC", **context, "locale": locale}
        paths = self.paths(name, locale)
        for path in paths.values():
            self._check_cost(path)
        out: dict[str, str] = {}
        budget = _Budget(self.limits.max_chars)
        path = ""
        try:
            with _deadline(self.limits.max_seconds) as expired:
                for part, path in paths.items():
                    out[part] = budget.render(self.env.get_template(path), values, expired)
        except _OverLimit as exc:
            refused = RenderLimitExceeded(str(exc), _template_place(exc, self.folder / path))
            if isinstance(exc, _OutOfTime):
                self._refused[path] = refused
            raise refused from None
        subject = " ".join(out["subject"].split())  # one line: no header folding tricks
        return RenderedNotice(locale, subject, out["txt"], out.get("html"))

    def cost_problems(self, names: set[str] | None = None) -> list[Problem]:
        """Runaway constructs found without data in the notices `names` (default: all)."""
        problems = []
        for name in sorted(self.names() if names is None else names):
            for locale in sorted(self.locales(name)):
                for path in self.paths(name, locale).values():
                    try:
                        self._check_cost(path)
                    except RenderLimitExceeded as exc:
                        hint = "a letter must render in seconds and stay a letter's size"
                        problems.append(Problem(exc.message, exc.location, hint))
        return problems

    def check_costs(self) -> None:
        """Raise PolicyError listing every template that is runaway whatever the data."""
        problems = self.cost_problems()
        if problems:
            raise PolicyError(problems)

    def _check_cost(self, path: str) -> None:
        """Raise RenderLimitExceeded if the template at `path` is runaway whatever its data."""
        if path not in self._refused:
            source, filename, _ = self.env.loader.get_source(self.env, path)  # type: ignore[union-attr]
            found = _static_cost(self.env.parse(source, path, filename), self.limits)
            self._refused[path] = None
            if found:
                where = Location(filename or path, found[0])
                self._refused[path] = RenderLimitExceeded(found[1], where)
        refused = self._refused[path]
        if refused is not None:
            raise RenderLimitExceeded(refused.message, refused.location)


class _Budget:
    """The characters a letter's parts may still produce."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.used = 0

    def render(
        self, template: Template, values: dict[str, Any], expired: Callable[[], bool]
    ) -> str:
        """Render one part chunk by chunk, stopping it where it passes the budget."""
        chunks = template.generate(values)
        out = []
        try:
            for chunk in chunks:
                self.used += len(chunk)
                if self.used > self.max_chars:
                    raise _OverLimit(f"the letter grows past {self.max_chars:,} characters")
                if expired():
                    raise _OutOfTime("the letter takes too long to render")
                out.append(chunk)
        except _OverLimit as exc:
            if chunks.gi_frame is not None:  # stopped between chunks: throw it in to get a line
                chunks.throw(exc)
            raise
        return "".join(out)


class _Alarm:
    """SIGALRM as the render clock, installed once (installing it per letter cost more than
    rendering some letters): an alarm outside a rendering goes to the handler it replaced."""

    def __init__(self) -> None:
        self.message: str | None = None  # set while a rendering is timed
        self.replaced: Any = signal.SIG_DFL
        self.foreign_timer = False  # someone else's timer runs besides ours

    def ring(self, signum: int, frame: FrameType | None) -> None:
        """The SIGALRM handler."""
        if self.message is not None:
            raise _OutOfTime(self.message)
        if not self.foreign_timer:
            return  # one of ours that came as the rendering ended: nobody else's business
        if callable(self.replaced):
            self.replaced(signum, frame)
        elif self.replaced == signal.SIG_DFL:  # what the alarm would have done: end the process
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGALRM)

    def install(self) -> None:
        """Make `ring` the handler, unless it is already (someone may have replaced it since)."""
        if signal.getsignal(signal.SIGALRM) != self.ring:
            self.replaced = signal.signal(signal.SIGALRM, self.ring)


_ALARM = _Alarm() if hasattr(signal, "setitimer") else None


@contextmanager
def _deadline(seconds: float) -> Iterator[Callable[[], bool]]:
    """Interrupt the rendering after `seconds`; yields a check for where no signal can."""
    if _ALARM is None or threading.current_thread() is not threading.main_thread():
        stop_at = time.monotonic() + seconds
        yield lambda: time.monotonic() > stop_at
        return
    _ALARM.install()
    _ALARM.message = f"the letter takes longer than {seconds:g} s to render"
    # Repeats every 50 ms in case template code swallows the first one.
    delay, interval = signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    started = time.monotonic() if delay else 0.0
    _ALARM.foreign_timer = bool(delay)
    try:
        yield _never
    finally:
        while True:  # an alarm may still ring during this; then it is done again
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _ALARM.message = None
                break
            except _OutOfTime:
                continue
        if delay:  # someone else's timer (a test runner's time-out): give back what is left
            left = max(delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _never() -> bool:
    return False


def _template_place(exc: BaseException, fallback: Path) -> Location:
    """The template file and line the rendering was at when `exc` was raised."""
    return template_line(exc) or Location(fallback)


def template_line(exc: BaseException) -> Location | None:
    """The template file and line a rendering was at when `exc` was raised, if in one."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return Location(frames[-1].filename, frames[-1].lineno) if frames else None


def render_failure(exc: BaseException) -> str:
    """Why a letter could not be rendered, for `last_error`: the error and its template line."""
    reason = f"cannot render: {type(exc).__name__}: {exc}"
    place = None if isinstance(exc, RenderLimitExceeded) else template_line(exc)
    return f"{reason} ({place})" if place else reason  # a limit's message names its place


def _static_cost(tree: nodes.Template, limits: RenderLimits) -> tuple[int, str] | None:
    """(line, why) of the first construct that is runaway whatever the data, or None."""
    for node in tree.find_all((nodes.Mul, nodes.Pow, nodes.Add)):
        try:
            _constant(node, limits.max_chars)
        except _OverLimit as exc:
            return node.lineno, f"{exc} (whatever the data)"
        except nodes.Impossible:
            continue  # depends on the data: checked as it renders
    return _static_loops(tree, 1, limits)


_CONSTANT_OPS: dict[type[nodes.Node], tuple[str, Callable[[Any, Any], Any]]] = {
    nodes.Mul: ("*", operator.mul),
    nodes.Pow: ("**", operator.pow),
    nodes.Add: ("+", operator.add),
}


def _constant(node: nodes.Node, max_chars: int) -> Any:
    """The value of a constant expression, computed only where its size is known to be safe;
    raises _OverLimit for one that is not, nodes.Impossible for one that depends on data."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        return -_constant(node.node, max_chars)
    if type(node) in _CONSTANT_OPS:
        op, compute = _CONSTANT_OPS[type(node)]
        left = _constant(node.left, max_chars)  # type: ignore[attr-defined]
        right = _constant(node.right, max_chars)  # type: ignore[attr-defined]
        problem = _oversized(op, left, right, max_chars)
        if problem:
            raise _OverLimit(problem)
        try:
            return compute(left, right)
        except (TypeError, ValueError, ArithmeticError):
            raise nodes.Impossible() from None
    raise nodes.Impossible()


def _static_loops(node: nodes.Node, runs: int, limits: RenderLimits) -> tuple[int, str] | None:
    """Loops over constant ranges whose nest runs too often, or prints too much text."""
    for child in node.iter_child_nodes():
        times = runs
        if isinstance(child, nodes.For):
            times = runs * _range_length(child.iter)
            if times > _MAX_STATIC_ITERATIONS:
                return child.lineno, f"the loops run {times:,} times (whatever the data)"
        elif isinstance(child, nodes.TemplateData) and len(child.data) * runs > limits.max_chars:
            size = len(child.data) * runs
            return child.lineno, (
                f"the loops print {size:,} characters, over the limit of "
                f"{limits.max_chars:,} (whatever the data)"
            )
        found = _static_loops(child, times, limits)
        if found:
            return found
    return None


def _range_length(iterable: nodes.Node) -> int:
    """How many items `range(<constants>)` gives (capped as the sandbox caps it); else 1."""
    if not (
        isinstance(iterable, nodes.Call)
        and isinstance(iterable.node, nodes.Name)
        and iterable.node.name == "range"
        and not iterable.kwargs
    ):
        return 1
    try:
        bounds = [_constant(arg, 0) for arg in iterable.args]
        return min(len(range(*bounds)), MAX_RANGE)
    except (nodes.Impossible, _OverLimit, TypeError, ValueError):
        return 1
