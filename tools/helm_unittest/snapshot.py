"""Snapshot files in the plugin's format: ``tests/__snapshot__/<suite file>.snap``.

The file maps each test name to its snapshots, numbered from 1 in the order
the test takes them; each snapshot is the YAML text of the value. A snapshot
that does not exist yet is recorded and passes; one that differs fails unless
``update`` is set (``-u``), which rewrites it. The file is written back when
anything was added or changed, holding only the snapshots the run took.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from . import yamlcore


def _without_leading_newlines(value: Any) -> Any:
    # The plugin drops the newlines that start any string before writing a snapshot.
    if isinstance(value, str):
        return value.lstrip("\n")
    if isinstance(value, dict):
        return {key: _without_leading_newlines(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_leading_newlines(item) for item in value]
    return value


def snapshot_text(value: Any) -> str:
    """A value as the plugin writes it in a snapshot."""
    return yamlcore.dump(_without_leading_newlines(value))


def snapshot_path(suite_file: Path) -> Path:
    return suite_file.parent / "__snapshot__" / f"{suite_file.name}.snap"


@dataclasses.dataclass
class SnapshotStore:
    """The snapshots of one suite file."""

    path: Path
    update: bool = False
    cached: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)
    current: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)
    changed: bool = False
    counters: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, suite_file: Path, update: bool = False) -> SnapshotStore:
        path = snapshot_path(suite_file)
        cached: dict[str, dict[int, str]] = {}
        if path.exists():
            loaded = yaml.safe_load(path.read_text()) or {}
            cached = {
                str(k): {int(i): str(s) for i, s in (v or {}).items()} for k, v in loaded.items()
            }
        return cls(path, update, cached)

    def compare(self, test: str, content: Any) -> tuple[bool, str, str]:
        """Next snapshot of ``test``: (matches, cached text, new text)."""
        index = self.counters.get(test, 0) + 1
        self.counters[test] = index
        new = snapshot_text(content)
        cached = self.cached.get(test, {}).get(index)
        self.current.setdefault(test, {})[index] = new
        if cached is None:
            self.changed = True
            return True, new, new
        if cached == new:
            return True, cached, new
        if self.update:
            self.changed = True
            return True, cached, new
        self.current[test][index] = cached
        return False, cached, new

    def save(self) -> None:
        """Write the file back when a snapshot was added or updated."""
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(yamlcore.dump(self.current, sort_keys=False))
