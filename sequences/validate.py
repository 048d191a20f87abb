"""Full validation of sequence files: the schema (``sequences.loader``) plus everything that needs the
templates or a lead. Each problem is a ``Diagnostic`` pointing at the key to fix (a step's ``template:``,
``subject:``, ``text:``, ``note:`` or ``if:`` value).

Checked beyond the schema: template files exist; templates, subjects, SMS texts and notes render for
``SAMPLE_LEAD`` under ``StrictUndefined`` and inside the sandbox limits; no unsafe constructs (private
attributes, ``|attr``), even in branches the sample lead does not take; ``if`` expressions compile and
evaluate; marketing emails carry ``{{ unsubscribe_url }}`` and marketing SMS a STOP mention; SMS length
(a warning past one segment, an error past ``MAX_SMS_SEGMENTS``); sequence names unique across files.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from channels.sms_length import non_gsm_characters, sms_length
from sequences.diagnostics import Diagnostic, Loc, sort_diagnostics, warning
from sequences.loader import ParsedFile, library_files, parse_sequence_file
from sequences.rendering import SAMPLE_LEAD, SAMPLE_UNSUBSCRIBE_URL, Renderer, sample_context
from sequences.schema import Channel, Sequence, Step
from spirale.errors import RenderError

MAX_SMS_SEGMENTS = 10
UNSUBSCRIBE_TAG = "{{ unsubscribe_url }}"


def sequence_files(paths: list[Path], sequences_dir: Path) -> list[tuple[Path, Path]]:
    """The sequence files to check with the templates directory of each, in a stable order.

    A directory means its ``library/*.yaml`` (or its own ``*.yaml`` when it has no ``library/``) with
    its ``templates/``. A file uses ``templates/`` beside its ``library/`` folder or beside itself, else
    ``sequences_dir/templates``.
    """
    found: list[tuple[Path, Path]] = []
    for path in paths or [sequences_dir]:
        if path.is_dir():
            library = path / "library"
            files = library_files(path) if library.is_dir() else sorted(path.glob("*.yaml"))
            found.extend((f, path / "templates") for f in files)
        else:
            found.append((path, templates_dir_for(path, sequences_dir)))
    return list(dict.fromkeys(found))


def templates_dir_for(path: Path, sequences_dir: Path) -> Path:
    """Where the templates of a sequence file are looked up."""
    if path.parent.name == "library" and (path.parent.parent / "templates").is_dir():
        return path.parent.parent / "templates"
    if (path.parent / "templates").is_dir():
        return path.parent / "templates"
    return sequences_dir / "templates"


def validate_paths(
    paths: list[Path], sequences_dir: Path, *, templates_dir: Path | None = None
) -> list[Diagnostic]:
    """Every problem of every sequence file under ``paths`` (default: the library), sorted."""
    return validate_files(
        [(f, templates_dir or t) for f, t in sequence_files(paths, sequences_dir)],
    )


def validate_files(files: list[tuple[Path, Path]]) -> list[Diagnostic]:
    """Every problem of these (file, templates directory) pairs, including duplicate names across them."""
    renderers: dict[Path, Renderer] = {}
    names: dict[str, Path] = {}
    diagnostics: list[Diagnostic] = []
    for path, templates_dir in files:
        renderer = renderers.get(templates_dir) or renderers.setdefault(
            templates_dir, Renderer(templates_dir)
        )
        parsed = parse_sequence_file(path)
        diagnostics.extend(check_parsed(parsed, renderer))
        name = parsed.data.get("name") if isinstance(parsed.data, dict) else None
        if isinstance(name, str) and name in names:
            diagnostics.append(
                parsed.at(("name",), f"duplicate sequence name {name!r} (also in {names[name]})")
            )
        elif isinstance(name, str):
            names[name] = path
    return sort_diagnostics(diagnostics)


def validate_sequence_file(path: Path, templates_dir: Path) -> list[Diagnostic]:
    """Every problem of one sequence file, sorted by position."""
    return sort_diagnostics(check_parsed(parse_sequence_file(path), Renderer(templates_dir)))


def check_parsed(parsed: ParsedFile, renderer: Renderer) -> list[Diagnostic]:
    """The schema diagnostics of a parsed file plus the semantic checks of every step that is valid
    on its own (so one broken step does not hide the template problems of the others)."""
    steps = valid_steps(parsed)
    if not steps:
        return list(parsed.diagnostics)
    sequence = parsed.sequence or Sequence.model_construct(
        name=parsed.data.get("name") if isinstance(parsed.data.get("name"), str) else parsed.path.stem,
        steps=tuple(step for _, step in steps),
    )
    check = _FileCheck(parsed, sequence, renderer)
    for index, step in steps:
        check.step(index, step)
    return list(dict.fromkeys([*parsed.diagnostics, *check.found]))


def valid_steps(parsed: ParsedFile) -> list[tuple[int, Step]]:
    """(index, step) of the steps that validate, also when the file as a whole does not."""
    if parsed.sequence is not None:
        return list(enumerate(parsed.sequence.steps))
    raw = parsed.data.get("steps") if isinstance(parsed.data, dict) else None
    if not isinstance(raw, list):
        return []
    steps = []
    for index, item in enumerate(raw):
        try:
            steps.append((index, Step.model_validate(item)))
        except ValidationError:
            continue  # the loader has already reported this step's errors, with their positions
    return steps


@dataclass(frozen=True, slots=True)
class _Arm:
    """One version of a step that a lead can receive: the base step or one of its variants."""

    step: Step
    index: int
    variant_id: str | None
    variant_index: int | None

    def loc(self, key: str) -> Loc:
        """Where ``key`` is set for this arm: on the variant if it overrides it, else on the step."""
        step_loc: Loc = ("steps", self.index)
        if self.variant_index is not None:
            variant = self.step.variants[self.variant_index]
            if getattr(variant, key, None) is not None:
                return (*step_loc, "variants", self.variant_index, key)
        return (*step_loc, key) if getattr(self.step, key, None) is not None else step_loc

    def value(self, key: str) -> str | None:
        variant = self.step.arm(self.variant_id)
        own: str | None = getattr(variant, key, None) if variant else None
        return own or getattr(self.step, key, None)

    def describe(self) -> str:
        name = f"{self.step.channel.value} {self.step.id!r}"
        return f"{name} variant {self.variant_id!r}" if self.variant_id else name


def _arms(index: int, step: Step) -> Iterator[_Arm]:
    if not step.variants:
        yield _Arm(step, index, None, None)
    for variant_index, variant in enumerate(step.variants):
        yield _Arm(step, index, variant.id, variant_index)


@dataclass(slots=True)
class _FileCheck:
    parsed: ParsedFile
    sequence: Sequence
    renderer: Renderer
    found: list[Diagnostic] = field(default_factory=list)

    def error(self, loc: Loc, message: str) -> None:
        self.found.append(self.parsed.at(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        pos = self.parsed.source.position(loc)
        self.found.append(warning(str(self.parsed.path), pos.line, pos.col, message))

    def step(self, index: int, step: Step) -> None:
        if step.if_ is not None:
            self.condition(("steps", index, "if"), step.if_)
        for arm in _arms(index, step):
            if step.channel is Channel.EMAIL:
                self.email(arm)
            elif step.channel is Channel.SMS:
                self.sms(arm)
            elif step.note:
                self.inline(arm, "note")

    def condition(self, loc: Loc, expression: str) -> None:
        try:
            self.renderer.evaluate_condition(expression, SAMPLE_LEAD)
        except RenderError as exc:
            self.error(loc, str(exc))

    def piece(self, loc: Loc, label: str, source: Callable[[], str], render: Callable[[], str]) -> str | None:
        """Scan one template for unsafe constructs, then render it; None if it has a problem."""
        try:
            unsafe = dict(reversed(self.renderer.unsafe_constructs(source(), label)))  # the first per line
            for line, what in sorted(unsafe.items()):
                self.error(loc, f"{label}, line {line}: unsafe construct: {what}")
            return None if unsafe else render()
        except RenderError as exc:
            self.error(loc, str(exc))
            return None

    def file_piece(self, arm: _Arm, name: str) -> str | None:
        context = sample_context(self.sequence, arm.step, arm.variant_id)
        return self.piece(
            arm.loc("template"),
            f"template {name!r}",
            lambda: self.renderer.source(name),
            lambda: self.renderer.render_template(name, context),
        )

    def inline(self, arm: _Arm, key: str) -> str | None:
        source = arm.value(key) or ""
        context = sample_context(self.sequence, arm.step, arm.variant_id)
        label = f"{key} of step {arm.step.id!r}"
        return self.piece(
            arm.loc(key), label, lambda: source, lambda: self.renderer.render_string(source, context, label)
        )

    def template_exists(self, arm: _Arm, name: str) -> bool:
        if self.renderer.has_template(name):
            return True
        suffix = ".html.j2" if name.endswith(".html.j2") else ".txt.j2"
        known = [n.removesuffix(suffix) for n in self.renderer.template_names() if n.endswith(suffix)]
        close = difflib.get_close_matches(name.removesuffix(suffix), known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        folder = self.renderer.templates_dir.name
        self.error(arm.loc("template"), f"missing template file {name!r} in {folder}/{hint}")
        return False

    def email(self, arm: _Arm) -> None:
        template = arm.value("template")
        if arm.value("subject") is None:
            self.warn(arm.loc("template"), f"{arm.describe()} has no subject")
        else:
            self.inline(arm, "subject")
        if template is None or not self.template_exists(arm, f"{template}.html.j2"):
            return
        names = [f"{template}.html.j2"]
        if self.renderer.has_template(f"{template}.txt.j2"):
            names.append(f"{template}.txt.j2")
        for name in names:
            body = self.file_piece(arm, name)
            if body is not None and not arm.step.transactional and SAMPLE_UNSUBSCRIBE_URL not in body:
                self.error(
                    arm.loc("template"),
                    f"marketing email template {name!r} has no unsubscribe link: add {UNSUBSCRIBE_TAG}",
                )

    def sms(self, arm: _Arm) -> None:
        if arm.value("text") is not None:
            text, loc = self.inline(arm, "text"), arm.loc("text")
        else:
            name = f"{arm.value('template')}.txt.j2"
            if not self.template_exists(arm, name):
                return
            text, loc = self.file_piece(arm, name), arm.loc("template")
        if text is None:
            return
        if not arm.step.transactional and "stop" not in text.lower():
            self.error(loc, f"marketing {arm.describe()} has no STOP opt-out mention (e.g. 'STOP au 36180')")
        self.sms_length(arm, loc, text)

    def sms_length(self, arm: _Arm, loc: Loc, text: str) -> None:
        length = sms_length(text)
        if length.segments <= 1:
            return
        why = ""
        if length.encoding == "UCS-2":
            shown = ", ".join(repr(c) for c in non_gsm_characters(text)[:5])
            why = f"; not in GSM-7: {shown}"
        size = f"{length.encoding}, {length.units} characters{why}"
        message = f"{arm.describe()} is {length.segments} segments ({size})"
        if length.segments > MAX_SMS_SEGMENTS:
            self.error(loc, f"{message}: at most {MAX_SMS_SEGMENTS} allowed")
        else:
            self.warn(loc, message)
