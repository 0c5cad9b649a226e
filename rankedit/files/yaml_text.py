"""YAML files a person writes (plans, edit recipes), read strictly and told apart in one line.

- read only from a regular file (a FIFO would block the read forever) and as UTF-8 text
  (a UTF-16 file written by a Windows editor is named as such, not a UnicodeDecodeError);
- a key given twice in one mapping is an error naming the key and both lines (PyYAML
  keeps the last one in silence);
- booleans are YAML 1.2's core schema, ``true``/``false`` only: YAML 1.1's ``on``, ``off``,
  ``yes``, ``no``, ``y`` and ``n`` stay strings, so an edit named ``off`` is a name.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import yaml

from rankedit.core.errors import RankeditError

BOOL = "tag:yaml.org,2002:bool"
MERGE = "tag:yaml.org,2002:merge"


class DuplicateKey(ValueError):
    pass


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE:
                    continue  # '<<: *anchor' merges keys the mapping may then override: not a repeat
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error follows
                if line != key_node.start_mark.line + 1:
                    raise DuplicateKey(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                                       f"(first given at line {line}); give each key once")
        return super().construct_mapping(node, deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of a regular file, or one RankeditError saying why not."""
    p = Path(path)
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise RankeditError(f"{p}: not a regular file (a FIFO, device or socket is never read)")
        raw = p.read_bytes()
    except OSError as e:
        raise RankeditError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        utf16 = " (it looks like UTF-16)" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else ""
        raise RankeditError(f"{p}: not UTF-8 text, byte 0x{raw[e.start]:02x} at offset {e.start}{utf16}; "
                            "save it as UTF-8") from None


def load_yaml(path: str | os.PathLike) -> object:
    """The document in the YAML file ``path``, or one RankeditError naming the file and the problem."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except DuplicateKey as e:
        raise RankeditError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise RankeditError(f"{path}: cannot read YAML ({str(e).splitlines()[0]})") from None


def positions(data: object, where: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Every key and list item of a document by its path (('edits', 0, 'params', 'k')) -> its rank in
    the document's own order: errors found in several passes are reported in the order the file gives them."""
    out = {} if out is None else out
    out.setdefault(where, len(out))
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        positions(v, (*where, k), out)
    return out


def position_of(pos: dict[tuple, int], loc: tuple) -> int:
    """The rank of the deepest part of ``loc`` the document has."""
    loc = tuple(loc)
    while loc and loc not in pos:
        loc = loc[:-1]
    return pos.get(loc, 0)
