"""Nested results (dicts, lists, numbers) the way the tests need them: compared with exact
structure and floats to a relative and absolute 1e-12, and walked and mutated at every path (the
hostile-file tests break one field at a time)."""

from __future__ import annotations

import math


def assert_close_tree(a, b, path: str = "") -> None:
    """Assert ``a`` and ``b`` have the same keys, lengths and values; floats equal to 1e-12.
    ``path`` names the first place they differ."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_close_tree(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def key_paths(value, path=(), depth=0):
    """Every path (tuple of keys and list indices) into ``value``, 4 levels deep at most; of a
    list only the first item is walked."""
    yield path
    if depth >= 4:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from key_paths(item, (*path, key), depth + 1)
    elif isinstance(value, list) and value:
        yield from key_paths(value[0], (*path, 0), depth + 1)


REMOVED = object()  # the value that deletes the key at a path


def mutated(document, where: tuple, value):
    """A deep copy of JSON ``document`` with ``value`` at the path ``where`` (``REMOVED``:
    the key deleted there)."""
    import json

    copy = json.loads(json.dumps(document))
    parent = copy
    for key in where[:-1]:
        parent = parent[key]
    if value is REMOVED:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return copy


def one_line(result, exit_code: int = 2) -> str:
    """The single error line of a CLI result (click's ``CliRunner``) with ``exit_code``; no
    traceback. The error is all of stderr; stdout may hold the progress lines a build printed
    before it stopped (``threads: ...``, ``data: loading ...``), never an error."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not any(line.startswith(("error", "Traceback")) for line in result.stdout.splitlines()), (
        result.output
    )
    return lines[0]
