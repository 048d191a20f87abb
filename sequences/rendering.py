"""Rendering a step's messages from its Jinja2 templates, in the hardened sandbox (``sequences.sandbox``).

Templates live in ``<sequences_dir>/templates``: ``NAME.html.j2`` (HTML, autoescaped) and ``NAME.txt.j2``
(plain text, not escaped). A step's ``subject``, SMS ``text`` and manual-task ``note`` are inline Jinja
strings, rendered without escaping. Compiled templates are cached, so a render costs only its execution.

The template context (the contract every template relies on; always plain dicts, never ORM objects):

* ``lead``: ``{first_name, last_name, email, phone, company, job_title, country, timezone, status, owner,
  consent: {email: bool, sms: bool}}``
* ``sender``: ``{name, email}``
* ``unsubscribe_url``: str
* ``sequence``: ``{name}``
* ``step``: ``{id, channel}``
* ``variant``: the A/B variant id (str) or None

Undefined variables fail (``StrictUndefined``). Every Jinja error, and every sandbox or limit violation, is
translated here, in ``_translate``, into ``spirale.errors.RenderError`` naming the template and its line.
Step conditions (``if:``) are Jinja expressions over ``lead``, e.g. ``lead.phone and lead.consent.sms``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple

from jinja2 import FileSystemLoader, Template, TemplateError, TemplateNotFound, TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Context

from sequences.sandbox import (
    MAX_ALLOCATION,
    MAX_OUTPUT,
    MAX_SECONDS,
    HardenedEnvironment,
    close_budget,
    guard_tree,
    open_budget,
    unsafe_constructs,
)
from sequences.schema import Channel, Sequence, Step
from spirale.errors import RenderError

SAMPLE_LEAD: Mapping[str, Any] = MappingProxyType(
    {
        "first_name": "Camille",
        "last_name": "Martin",
        "email": "camille.martin@example.fr",
        "phone": "+33612345678",
        "company": "Atelier Martin",
        "job_title": "Directrice marketing",
        "country": "FR",
        "timezone": "Europe/Paris",
        "status": "warm",
        "owner": "Julien Bernard",
        "consent": MappingProxyType({"email": True, "sms": True}),
    }
)
SAMPLE_UNSUBSCRIBE_URL = "https://spirale.example/u/sample-unsubscribe-token"
SAMPLE_SENDER: Mapping[str, str] = MappingProxyType({"name": "Spirale", "email": "marketing@spirale.example"})

# Runtime errors a template can raise by itself ({{ 1/0 }}, {{ 'a' + 1 }}, runaway recursion).
_TEMPLATE_FAULTS = (TemplateError, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


class RenderedMessage(NamedTuple):
    """What a step sends: an email has a subject, HTML and text; an SMS or a task has text only."""

    subject: str | None
    html: str | None
    text: str | None


def plain_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a mapping as plain dicts (templates never see proxies or ORM objects)."""
    return {k: plain_dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def sample_context(
    sequence: Sequence, step: Step, variant_id: str | None, lead: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A full template context for previews and validation (``SAMPLE_LEAD`` unless a lead is given)."""
    return {
        "lead": plain_dict(SAMPLE_LEAD if lead is None else lead),
        "sender": dict(SAMPLE_SENDER),
        "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL,
        "sequence": {"name": sequence.name},
        "step": {"id": step.id, "channel": step.channel.value},
        "variant": variant_id,
    }


_BLOCK_END = re.compile(r"<\s*(br\s*/?|/p|/div|/h[1-6]|/li|/tr|/table)\s*>", re.IGNORECASE)
_DROPPED = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LINK = re.compile(
    r"""<a\b[^>]*?\bhref\s*=\s*["'](https?://[^"']+)["'][^>]*>(.*?)</a\s*>""", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]+>")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")


def html_to_text(markup: str) -> str:
    """A simple plain-text version of an HTML email: tags dropped, block ends as line breaks, web links
    kept as ``label (url)`` so that the unsubscribe link survives."""
    text = _LINK.sub(_link_text, _DROPPED.sub("", markup))
    text = _TAG.sub("", _BLOCK_END.sub("\n", text))
    lines = (" ".join(line.split()) for line in html.unescape(text).splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


def _link_text(match: re.Match[str]) -> str:
    url, label = match.group(1), _TAG.sub("", match.group(2)).strip()
    return url if not label or label == url else f"{label} ({url})"


def _template_line(tb: TracebackType | None, filename: str | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == (filename or "<template>"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _expression_wording(message: str | None) -> str:
    return (message or "invalid expression").replace("'end of template'", "end of the expression")


def _undefined_message(exc: UndefinedError, tree: nodes.Template | None, line: int | None) -> str:
    missing = re.search(r"has no (?:attribute|element) '([^']*)'", exc.message or "")
    if missing is None or tree is None:
        name = re.match(r"'([^']*)' is undefined", exc.message or "")
        return f"undefined variable {name.group(1)!r}" if name else exc.message or "undefined value"
    candidates = [
        n
        for n in tree.find_all(nodes.Getattr)
        if n.attr == missing.group(1) and (line is None or n.lineno == line)
    ]
    path = _dotted(candidates[0]) if candidates else None
    return f"undefined variable {path!r}" if path else f"undefined value ({exc.message})"


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        parent = _dotted(node.node)
        return f"{parent}.{node.attr}" if parent else None
    return None


class Renderer:
    """Renders steps from the templates of one directory, with compiled templates cached."""

    def __init__(
        self,
        templates_dir: Path,
        *,
        max_seconds: float = MAX_SECONDS,
        max_output: int = MAX_OUTPUT,
        max_allocation: int = MAX_ALLOCATION,
    ) -> None:
        self.templates_dir = templates_dir
        self.max_seconds, self.max_output, self.max_allocation = max_seconds, max_output, max_allocation
        loader = FileSystemLoader(templates_dir)
        self._html_env = HardenedEnvironment(loader=loader, autoescape=True)
        self._text_env = HardenedEnvironment(loader=loader, autoescape=False)
        self._html_globals = dict(self._html_env.globals)
        self._text_globals = dict(self._text_env.globals)
        self._files: dict[str, Template] = {}
        self._exists: dict[str, bool] = {}
        self._inline: dict[str, Template] = {}
        self._conditions: dict[str, Template] = {}
        self._global_keys: dict[Template, set[str]] = {}

    # --- templates --------------------------------------------------------------------------------

    def has_template(self, name: str) -> bool:
        """Whether ``templates_dir/name`` exists (cached)."""
        found = self._exists.get(name)
        if found is None:
            found = self._exists[name] = (self.templates_dir / name).is_file()
        return found

    def template_names(self) -> list[str]:
        """Every template file name in the directory (for hints)."""
        return sorted(p.name for p in self.templates_dir.glob("*.j2")) if self.templates_dir.is_dir() else []

    def source(self, name: str) -> str:
        """The source text of a template file."""
        try:
            return self._text_env.loader.get_source(self._text_env, name)[0]  # type: ignore[union-attr]
        except TemplateNotFound as exc:
            raise RenderError(f"template {name!r} not found in {self.templates_dir}") from exc

    def unsafe_constructs(self, source: str, label: str) -> list[tuple[int, str]]:
        """Constructs the sandbox refuses, found statically in a template source."""
        try:
            return unsafe_constructs(self._text_env.parse(source))
        except TemplateSyntaxError as exc:
            raise self._translate(exc, label, None, source) from exc

    def _file(self, name: str) -> Template:
        template = self._files.get(name)
        if template is None:
            env = self._html_env if name.endswith(".html.j2") else self._text_env
            try:
                template = self._files[name] = env.get_template(name)
            except TemplateNotFound as exc:
                raise RenderError(f"template {name!r} not found in {self.templates_dir}") from exc
            except TemplateSyntaxError as exc:
                raise self._translate(exc, f"template {name!r}", None, None) from exc
        return template

    def _inline_template(self, source: str, label: str) -> Template:
        template = self._inline.get(source)
        if template is None:
            try:
                template = self._inline[source] = self._text_env.from_string(source)
            except TemplateSyntaxError as exc:
                raise self._translate(exc, label, None, source) from exc
        return template

    # --- rendering --------------------------------------------------------------------------------

    def render_template(self, name: str, context: Mapping[str, Any]) -> str:
        """Render a template file (``welcome.html.j2``)."""
        return self._run(self._file(name), context, f"template {name!r}", None)

    def render_string(self, source: str, context: Mapping[str, Any], label: str = "inline template") -> str:
        """Render an inline Jinja string (a subject, an SMS text, a note), without escaping."""
        return self._run(self._inline_template(source, label), context, label, source)

    def _run(self, template: Template, context: Mapping[str, Any], label: str, source: str | None) -> str:
        token = open_budget(self.max_seconds, self.max_allocation)
        try:
            return self._stream(template, context, label)
        except _TEMPLATE_FAULTS as exc:
            raise self._translate(exc, label, template, source) from exc
        finally:
            close_budget(token)

    def _stream(self, template: Template, context: Mapping[str, Any], label: str) -> str:
        """``Template.generate`` without its per-render copies of the globals, and with an output cap."""
        flat_globals = self._html_globals if template.environment is self._html_env else self._text_globals
        jinja_context = self._new_context(template, {**flat_globals, **context})
        parts: list[str] = []
        size = 0
        try:
            for chunk in template.root_render_func(jinja_context):
                size += len(chunk)
                if size > self.max_output:
                    raise RenderError(f"{label}: output is larger than {self.max_output} characters")
                parts.append(chunk)
        except Exception:
            # Maps the traceback onto template lines and re-raises, as ``Template.generate`` does.
            template.environment.handle_exception()
        return "".join(parts)

    def _new_context(self, template: Template, variables: dict[str, Any]) -> Context:
        """``template.new_context(variables, shared=True)``, except that the names of the template's
        globals are listed once per template instead of walking its ``ChainMap`` on every render."""
        keys = self._global_keys.get(template)
        if keys is None:
            keys = self._global_keys[template] = set(template.globals)
        environment = template.environment
        context = environment.context_class(environment, variables, template.name, template.blocks)
        context.globals_keys = keys  # read only: Jinja subtracts from it, never adds
        return context

    def render_step(
        self, sequence: Sequence, step: Step, variant_id: str | None, context: Mapping[str, Any]
    ) -> RenderedMessage:
        """The messages of one step (a variant's template/subject/text override the step's)."""
        arm = step.arm(variant_id)
        template = (arm.template if arm else None) or step.template
        if step.channel is Channel.EMAIL:
            return self._email(step, template, (arm.subject if arm else None) or step.subject, context)
        if step.channel is Channel.SMS:
            text = (arm.text if arm else None) or step.text
            if text is not None:
                return RenderedMessage(
                    None, None, self.render_string(text, context, f"text of step {step.id!r}")
                )
            if template is None:
                raise RenderError(f"sms step {step.id!r} has neither text nor template")
            return RenderedMessage(None, None, self.render_template(f"{template}.txt.j2", context))
        note = step.note and self.render_string(step.note, context, f"note of step {step.id!r}")
        return RenderedMessage(None, None, note)

    def _email(
        self, step: Step, template: str | None, subject: str | None, context: Mapping[str, Any]
    ) -> RenderedMessage:
        if template is None:
            raise RenderError(f"email step {step.id!r} has no template")
        body = self.render_template(f"{template}.html.j2", context)
        text_name = f"{template}.txt.j2"
        text = (
            self.render_template(text_name, context) if self.has_template(text_name) else html_to_text(body)
        )
        rendered_subject = subject and self.render_string(subject, context, f"subject of step {step.id!r}")
        return RenderedMessage(rendered_subject, body, text)

    # --- conditions -------------------------------------------------------------------------------

    def compile_condition(self, expression: str) -> Template:
        """Compile an ``if:`` expression (cached); ``RenderError`` on a syntax error or unsafe construct."""
        template = self._conditions.get(expression)
        if template is None:
            template = self._conditions[expression] = self._compile_condition(expression)
        return template

    def _compile_condition(self, expression: str) -> Template:
        label = f"condition {expression!r}"
        env = self._text_env
        try:
            parser = Parser(env, expression, state="variable")
            expr = parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError(
                    "unexpected text after the expression", parser.stream.current.lineno
                )
        except TemplateSyntaxError as exc:
            raise self._translate(exc, label, None, None, with_line=False) from exc
        tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
        unsafe = unsafe_constructs(tree)
        if unsafe:
            raise RenderError(f"{label}: unsafe construct: {unsafe[0][1]}")
        guard_tree(tree)
        tree.set_environment(env)
        return env.from_string(tree)

    def evaluate_condition(self, expression: str, lead: Mapping[str, Any]) -> bool:
        """The truth of an ``if:`` expression for a lead (``lead`` is the only variable)."""
        template = self.compile_condition(expression)
        token = open_budget(self.max_seconds, self.max_allocation)
        try:
            context = self._new_context(template, {**self._text_globals, "lead": lead})
            for _ in template.root_render_func(context):
                pass
            return bool(context.vars["result"])
        except _TEMPLATE_FAULTS as exc:
            raise self._translate(exc, f"condition {expression!r}", None, f"{{{{ {expression} }}}}") from exc
        finally:
            close_budget(token)

    # --- errors -----------------------------------------------------------------------------------

    def _translate(
        self,
        exc: BaseException,
        label: str,
        template: Template | None,
        source: str | None,
        *,
        with_line: bool = True,
    ) -> RenderError:
        """The one place where Jinja and template runtime errors become ``RenderError``.
        ``template`` locates the failing line; conditions (one line) pass None."""
        if isinstance(exc, TemplateSyntaxError):
            if not with_line:
                return RenderError(f"{label}: syntax error: {_expression_wording(exc.message)}")
            return RenderError(f"{label}, line {exc.lineno}: syntax error: {exc.message}")
        if isinstance(exc, TemplateNotFound):
            return RenderError(f"{label}: includes a template that does not exist: {exc.name!r}")
        line = _template_line(exc.__traceback__, template.filename) if template else None
        where = f"{label}, line {line}" if line else label
        if isinstance(exc, UndefinedError):
            return RenderError(f"{where}: {_undefined_message(exc, self._tree(template, source), line)}")
        if isinstance(exc, RecursionError):
            return RenderError(f"{where}: recursion too deep")
        if isinstance(exc, TemplateError):
            return RenderError(f"{where}: {exc.message or type(exc).__name__}")
        return RenderError(f"{where}: {type(exc).__name__}: {exc}")

    def _tree(self, template: Template | None, source: str | None) -> nodes.Template | None:
        if source is None and template is not None and template.name is not None:
            source = self.source(template.name)
        if source is None:
            return None
        try:
            return self._text_env.parse(source)
        except TemplateSyntaxError:
            return None  # the source compiled once; a hint-only re-parse that fails names no variable


@lru_cache(maxsize=1)
def _condition_renderer() -> Renderer:
    return Renderer(Path("."))


def compile_condition(expression: str) -> None:
    """Check an ``if:`` expression; ``RenderError`` on a syntax error or an unsafe construct."""
    _condition_renderer().compile_condition(expression)


def evaluate_condition(expression: str, lead: Mapping[str, Any]) -> bool:
    """The truth of an ``if:`` expression for a lead (module-level, cached compiled expressions)."""
    return _condition_renderer().evaluate_condition(expression, lead)
