"""The live set of sequences a process works with: loaded once from ``sequences/library/``,
looked up by name, each with its content version and one shared template renderer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sequences.loader import find_sequence, load_sequence, sequence_digest
from sequences.rendering import Renderer
from sequences.schema import Sequence
from spirale.errors import SequenceError


@dataclass
class SequenceCatalog:
    """Sequences by name, their versions, and the renderer for their templates."""

    sequences_dir: Path
    renderer: Renderer
    _sequences: dict[str, Sequence] = field(default_factory=dict)
    _versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, sequences_dir: Path) -> SequenceCatalog:
        return cls(sequences_dir=sequences_dir, renderer=Renderer(sequences_dir / "templates"))

    def get(self, name: str) -> Sequence:
        """The sequence called ``name``, loaded on first use (raises ``SequenceError``)."""
        sequence = self._sequences.get(name)
        if sequence is None:
            path = find_sequence(name, self.sequences_dir)
            sequence = load_sequence(path)
            # The version first: a thread that sees the sequence must also see its version.
            self._versions[name] = sequence_digest(path)
            self._sequences[name] = sequence
        return sequence

    def version(self, name: str) -> str:
        self.get(name)
        return self._versions[name]

    def add(self, sequence: Sequence, version: str) -> None:
        """Register a sequence that does not come from the library directory (tests, previews)."""
        if not sequence.name:
            raise SequenceError("a sequence needs a name")
        self._sequences[sequence.name] = sequence
        self._versions[sequence.name] = version
