"""Reading YAML the user wrote (build specs, calibration configs, fake-server scripts), safely, into
typed models (`validate_model`), and writing a resolved model back out (`dump_model_yaml`).

A config file is small and hand-written, so anything else is a mistake or an attack, and must fail
at once with one line instead of eating the machine:

* only a regular file is read (a FIFO would block forever, `/dev/zero` would never end), and at
  most `MAX_YAML_BYTES` of it;
* alias expansion is bounded: a few hundred bytes of nested anchors (a "billion laughs" file)
  stand for billions of nodes, which PyYAML shares but everything downstream (validation, `repr`
  in an error message) would walk one by one; the *expanded* size is counted on the composed node
  graph and refused above `MAX_EXPANDED_NODES`, before anything is constructed;
* a mapping that repeats a key is refused with both lines (PyYAML silently keeps the last copy,
  so a second `models:` block would replace the first without a word);
* error messages show at most a short, bounded rendering of the offending value (`shorten`).
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from factory._util.errors import UserError

MAX_YAML_BYTES = 1 << 20  # 1 MiB: a build spec is a few kB; prompts and data live in their own files
MAX_EXPANDED_NODES = 100_000  # nodes after expanding every alias; a large real config has a few hundred
MAX_DEPTH = 64  # nesting of mappings and sequences
M = TypeVar("M", bound=BaseModel)


def read_regular_file(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of `path`, which must be a regular file of at most `max_bytes`; `UserError` otherwise.

    Opened non-blocking so that a FIFO cannot hang the open itself; its type is checked on the open
    descriptor (not the path), so a swapped symlink cannot slip past the check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise UserError(f"{what} not readable (permission denied): {path}") from None
    except OSError as exc:
        raise UserError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{what} path is a directory, not a file: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} is not a regular file (a pipe, device or socket): {path}")
        if info.st_size > max_bytes:
            raise UserError(f"{what} is too large: {path} has {info.st_size} bytes, the limit is {max_bytes}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(max_bytes + 1)  # a file that grows while read is still bounded
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise UserError(f"{what} is too large: {path} has more than {max_bytes} bytes")
    return data


class _BoundedLoader(yaml.SafeLoader):
    """A `SafeLoader` that refuses duplicate keys and checks the expanded size before constructing."""

    def construct_document(self, node: Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Checked before SafeConstructor flattens `<<: *defaults` merges, whose keys may be overridden.
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it with its own message
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shorten(key)} (first at line {first_line[key]})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: Node) -> None:
    """Count the nodes of `root` as if every alias were copied out, and its depth; refuse a bomb.

    Aliases make the node graph a DAG (or, with an anchor used inside itself, a cycle), so sizes are
    memoised per node: the count costs one visit per distinct node however large the expansion.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()

    def visit(node: Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key], depths[key]
        if depth > MAX_DEPTH:
            raise _too_nested(node)
        if key in on_path:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "an alias refers to the anchor it is inside (a recursive structure)",
                node.start_mark,
            )
        on_path.add(key)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        size, deepest = 1, 0
        for child in children:
            child_size, child_depth = visit(child, depth + 1)
            size += child_size
            deepest = max(deepest, child_depth + 1)
            if size > MAX_EXPANDED_NODES:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"aliases expand to more than {MAX_EXPANDED_NODES} values (an alias bomb?)",
                    node.start_mark,
                )
            if depth + deepest > MAX_DEPTH:
                raise _too_nested(node)
        on_path.discard(key)
        sizes[key], depths[key] = size, deepest
        return size, deepest

    if not isinstance(root, ScalarNode):
        visit(root, 0)


def _too_nested(node: Node) -> yaml.YAMLError:
    return yaml.constructor.ConstructorError(
        None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark
    )


def load_yaml_file(path: str | Path, what: str = "config file", *, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The data of the YAML file `path` (None when empty), read under the limits above.

    Every problem is a one-line `UserError` that starts with `what` and names the file and line.
    """
    path = Path(path)
    data = read_regular_file(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} is not valid UTF-8: {path} (byte {exc.start})") from None
    return parse_yaml_text(text, f"{what} {path}")


def parse_yaml_text(text: str, source: str) -> Any:
    """`text` parsed with the bounded loader; `source` names it in the error (e.g. 'config file x.yaml')."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if isinstance(problem, str) and problem else ""
        raise UserError(f"{source} is not valid YAML{where}{detail}") from None
    except RecursionError:
        raise UserError(f"{source} is not valid YAML (nested too deeply)") from None
    finally:
        loader.dispose()


_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4
_short.maxlevel = 2


def shorten(value: Any, limit: int = 60) -> str:
    """A bounded `repr` of a user's value for an error message: at most about `limit` characters,
    whatever the value's size (reprlib stops walking a container after a few items and levels)."""
    shown = _short.repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    """The first problem of a pydantic error as one bounded line: `PREFIX: path.to.field: message (got VALUE)`.

    Never `str(exc)`: pydantic renders the whole input there, which for an expanded YAML can be huge.
    """
    err = exc.errors()[0]
    loc = ".".join(_clip(str(p)) for p in err["loc"] if not str(p).startswith("function-after"))
    message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    got = ""
    if err["type"] not in ("missing", "value_error", "extra_forbidden") and "input" in err:
        got = f" (got {shorten(err['input'])})"
    more = f" [+{len(exc.errors()) - 1} more]" if len(exc.errors()) > 1 else ""
    where = f"{loc}: " if loc else ""
    return f"{prefix}: {where}{_clip(message, 300)}{got}{more}"


def _clip(text: str, limit: int = 60) -> str:
    """A key or message made from the user's input, cut to a length an error line can show."""
    return text if len(text) <= limit else text[:limit] + "..."


def validate_model(model: type[M], data: Any, prefix: str) -> M:
    """`data` (a YAML file's top level) validated into `model`: the one place a config file becomes a
    typed config. Anything but a mapping, or the first validation problem, is a one-line `UserError`
    that starts with `prefix` (e.g. "invalid config x.yaml")."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(describe_validation_error(exc, prefix)) from None


def dump_model_yaml(model: BaseModel) -> str:
    """A resolved config as YAML, every default written out, for the run folder (read back by the loaders)."""
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
