"""`--help` for the commands whose options are a dataclass: every key with its type, its default
and the comment written beside its field, grouped under the comment lines that head each group
(`# I/O`, `# data`, ...), as in nanoGPT's train.py. The descriptions are read from the source, so
they are written once, next to the fields."""

import dataclasses
import inspect
import io
import tokenize


def field_comments(cls) -> tuple[dict[str, str], dict[str, str]]:
    """`({field: its comment}, {field: the group heading above it})` from the class's source: a
    comment on its own line heads a group, one after code describes the field being defined."""
    fields = {f.name for f in dataclasses.fields(cls)}
    source = inspect.getsource(cls)
    line_comments, first_names = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row = token.start[0]
        if token.type == tokenize.COMMENT:
            line_comments[row] = token.string.lstrip("#").strip()
        elif token.type == tokenize.NAME:
            first_names.setdefault(row, token.string)
    comments, groups, heading, current = {}, {}, "", None
    for row, text in enumerate(source.splitlines(), start=1):
        if text.strip().startswith("#"):
            heading = line_comments[row]
            continue
        if first_names.get(row) in fields and text.lstrip().startswith(f"{first_names[row]}:"):
            current = first_names[row]
            groups[current] = heading
        if row in line_comments and current is not None:
            comments.setdefault(current, line_comments[row])
    return comments, groups


def describe(cls, command: str, summary: str, hidden: tuple[str, ...] = ()) -> str:
    """The usage text of `command`, whose `--key=value` options are the fields of `cls`."""
    return f"usage: {command}\n\n{summary}\n\n{options(cls, hidden)}"


def options(cls, hidden: tuple[str, ...] = ()) -> str:
    """Each field of `cls` as `--key=default (type)  description`, under its group's heading."""
    comments, groups = field_comments(cls)
    defaults = cls()
    lines, heading = [], None
    for field in dataclasses.fields(cls):
        if field.name in hidden:
            continue
        if groups[field.name] != heading:
            heading = groups[field.name]
            lines += ["", f"{heading}:" if heading else "options:"]
        kind = getattr(field.type, "__name__", str(field.type))
        default = getattr(defaults, field.name)
        lines.append(f"  --{field.name}={default!r} ({kind})  {comments.get(field.name, '')}".rstrip())
    return "\n".join(lines[1:])
