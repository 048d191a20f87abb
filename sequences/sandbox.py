"""The hardened Jinja2 sandbox that renders marketers' templates.

On top of Jinja's ``ImmutableSandboxedEnvironment`` (no private attributes, no ``str.format`` escapes, no
mutation of lists or dicts), templates are bounded in time and size, because a template is code that runs
for every message sent:

* ``range()`` yields at most ``MAX_RANGE`` items; ``lipsum`` is gone;
* ``*``, ``**``, ``%`` and ``+``, string methods (``center``, ``replace``, ``expandtabs`` ...), format widths
  and the filters that can blow up (``center``, ``indent``, ``replace``, ``batch``, ``slice``, ``format``,
  ``join``) are checked *before* they allocate;
* every string a template builds (operators, ``~``, filters, calls, ``{{ }}`` output) is charged to a
  per-render allocation budget, and loops, calls and charges check a per-render deadline.

A template going past a limit raises ``LimitExceeded`` (a Jinja ``SecurityError``); ``sequences.rendering``
translates it, like every other Jinja error, into ``spirale.errors.RenderError``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import wraps
from time import perf_counter
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RANGE = 10_000
MAX_OUTPUT = 256 * 1024  # characters of one rendered template
MAX_ALLOCATION = 8 * MAX_OUTPUT  # characters of intermediate strings built during one render
MAX_SECONDS = 0.5
MAX_FORMAT_WIDTH = 1_000
MAX_POWER_BITS = 4_096

ITER_GUARD = "_spirale_iter"
SIZE_GUARD = "_spirale_size"


class LimitExceeded(SecurityError):
    """A template went past a size or time limit."""


@dataclass(slots=True)
class _Budget:
    deadline: float
    remaining: int
    max_seconds: float
    max_allocation: int


_BUDGET: ContextVar[_Budget | None] = ContextVar("spirale_render_budget", default=None)


def open_budget(max_seconds: float, max_allocation: int) -> Token[_Budget | None]:
    """Start a render's time and allocation budget (close it with ``close_budget``)."""
    return _BUDGET.set(_Budget(perf_counter() + max_seconds, max_allocation, max_seconds, max_allocation))


def close_budget(token: Token[_Budget | None]) -> None:
    """End the budget opened by ``open_budget``."""
    _BUDGET.reset(token)


def _tick(budget: _Budget) -> None:
    if perf_counter() > budget.deadline:
        raise LimitExceeded(f"rendering took longer than {budget.max_seconds:g}s")


def _charge(size: int) -> None:
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.remaining -= size
    if budget.remaining < 0:
        raise LimitExceeded(f"the template builds more than {budget.max_allocation} characters")
    _tick(budget)


def _charge_value(value: object) -> object:
    if isinstance(value, str | list | tuple):
        _charge(len(value))
    return value


def _refuse(what: str) -> LimitExceeded:
    return LimitExceeded(f"{what} is too large for a template")


def bounded_range(*args: int) -> range:
    """``range()`` for templates: at most ``MAX_RANGE`` items."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise _refuse(f"range of {len(numbers)} items (at most {MAX_RANGE})")
    budget = _BUDGET.get()
    if budget is not None:
        _tick(budget)
    return numbers


# --- format strings ------------------------------------------------------------------------------

_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_SPEC = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


def _check_width(text: str | None) -> None:
    if text == "*" or (text and int(text) > MAX_FORMAT_WIDTH):
        raise _refuse(f"format width {text!r} (at most {MAX_FORMAT_WIDTH}, no '*')")


def check_percent_format(template: str) -> None:
    """Refuse ``%``-format widths and precisions that would build huge strings."""
    for match in _PERCENT.finditer(template):
        _check_width(match.group(1))
        _check_width(match.group(2))


def check_brace_format(template: str) -> None:
    """Refuse ``str.format`` widths, precisions and nested specs that would build huge strings."""
    for _literal, _field, spec, _conversion in string.Formatter().parse(template):
        if not spec:
            continue
        if "{" in spec:
            raise _refuse("nested format spec")
        match = _SPEC.match(spec)
        if match:
            _check_width(match.group(1))
            _check_width(match.group(2))


# --- operators and method calls ----------------------------------------------------------------


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        sized, count = (left, right) if isinstance(right, int) else (right, left)
        if (
            isinstance(sized, str | list | tuple)
            and isinstance(count, int)
            and len(sized) * count > MAX_OUTPUT
        ):
            raise _refuse(f"repetition to {len(sized) * count} items")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if right * abs(left).bit_length() > MAX_POWER_BITS:
            raise _refuse(f"power {left}**{right}")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left)


def _predicted_replace(text: str, old: object, new: object) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    return len(text) + text.count(old) * (len(new) - len(old))


def _check_method(method: Any, args: tuple[Any, ...]) -> None:
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str) or not args:
        return
    name, first = getattr(method, "__name__", ""), args[0]
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int) and first > MAX_OUTPUT:
        raise _refuse(f"{name}({first})")
    if name == "expandtabs" and isinstance(first, int) and first * owner.count("\t") > MAX_OUTPUT:
        raise _refuse(f"expandtabs({first})")
    if name == "replace" and len(args) > 1 and _predicted_replace(owner, first, args[1]) > MAX_OUTPUT:
        raise _refuse("replace() result")


# --- filters -------------------------------------------------------------------------------------


def _check_center(value: Any, width: int = 80, *_: Any) -> None:
    if isinstance(width, int) and width > MAX_OUTPUT:
        raise _refuse(f"center({width})")


def _check_indent(value: Any, width: int | str = 4, *_: Any, **__: Any) -> None:
    unit = len(width) if isinstance(width, str) else width
    if isinstance(unit, int) and unit * (str(value).count("\n") + 1) > MAX_OUTPUT:
        raise _refuse(f"indent({width!r})")


def _check_groups(value: Any, count: int = 1, *_: Any) -> None:
    if isinstance(count, int) and count > MAX_RANGE:
        raise _refuse(f"{count} groups")


def _check_replace(value: Any, old: Any = "", new: Any = "", *_: Any) -> None:
    if _predicted_replace(str(value), old, new) > MAX_OUTPUT:
        raise _refuse("replace result")


def _check_format(value: Any, *_: Any, **__: Any) -> None:
    check_percent_format(str(value))


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "batch": _check_groups,
    "slice": _check_groups,
    "replace": _check_replace,
    "format": _check_format,
}


def _charged_items(values: Iterable[Any]) -> list[Any]:
    return [_charge_value(item) for item in values]


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter: check its arguments first, charge what it returns."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    check = _FILTER_CHECKS.get(name)

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(*args[skip:], **kwargs)
        if name == "join" and len(args) > skip:
            args = (*args[:skip], _charged_items(args[skip]), *args[skip + 1 :])
        return _charge_value(func(*args, **kwargs))

    return guarded


def _ticking(values: Iterable[Any], budget: _Budget) -> Iterator[Any]:
    for count, item in enumerate(values):
        if not count & 63:
            _tick(budget)
        yield item


def guard_iter(values: Any) -> Any:
    """Wraps every ``{% for %}`` iterable so that long loops still meet the deadline."""
    budget = _BUDGET.get()
    return values if budget is None else _ticking(values, budget)


def _finalize(value: Any) -> Any:
    # Every ``{{ }}`` value passes here, including the ones collected by ``{% set x %}`` blocks; this
    # is the hot path of rendering, so the charge is inlined and the deadline left to loops and calls.
    if isinstance(value, str | list | tuple):
        budget = _BUDGET.get()
        if budget is not None:
            budget.remaining -= len(value)
            if budget.remaining < 0:
                raise LimitExceeded(f"the template builds more than {budget.max_allocation} characters")
    return value


# --- the template tree ---------------------------------------------------------------------------


def _guard_filter_node(child: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(child, name, [], [], None, None, lineno=child.lineno)


def guard_tree(node: nodes.Node) -> None:
    """Route ``{% for %}`` iterables and ``~`` concatenations through the guards, in place."""
    for field_name, value in node.iter_fields():
        if isinstance(value, nodes.Node):
            guard_tree(value)
            if isinstance(node, nodes.For) and field_name == "iter":
                setattr(node, field_name, _guard_filter_node(value, ITER_GUARD))  # type: ignore[arg-type]
            elif isinstance(value, nodes.Concat):
                setattr(node, field_name, _guard_filter_node(value, SIZE_GUARD))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                if isinstance(child, nodes.Node):
                    guard_tree(child)
                    if isinstance(child, nodes.Concat):
                        value[index] = _guard_filter_node(child, SIZE_GUARD)


def unsafe_constructs(tree: nodes.Node) -> list[tuple[int, str]]:
    """Constructs the sandbox refuses at render time, found statically (also in untaken branches):
    private or dunder attributes and the ``attr`` filter. Returns (line, description) pairs."""
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            found.append((node.lineno, f"access to private attribute {node.attr!r}"))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
                found.append((node.lineno, f"access to private attribute {node.arg.value!r}"))
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            found.append((node.lineno, "the 'attr' filter"))
    return sorted(found)


class HardenedEnvironment(ImmutableSandboxedEnvironment):
    """A sandbox with time and size limits, ``StrictUndefined`` and no template auto-reload."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, loader: BaseLoader | None, autoescape: bool) -> None:
        super().__init__(
            loader=loader,
            autoescape=autoescape,
            undefined=StrictUndefined,
            auto_reload=False,
            finalize=_finalize,
            keep_trailing_newline=True,
        )
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        self.filters[ITER_GUARD] = guard_iter
        self.filters[SIZE_GUARD] = _charge_value

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        guard_tree(tree)
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Template data are plain dicts: look keys up first, which is faster and always safe.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _charge_value(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            _tick(budget)
        _check_method(__obj, args)
        return _charge_value(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_brace_format(value.__self__)
        return wrapped
