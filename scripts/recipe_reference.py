"""The recipe reference, generated from the recipe schema so it cannot drift from it.

    python scripts/recipe_reference.py [OUT.md]      # prints it without OUT

Every key of :class:`edgekd.recipe.Recipe` and of every section below it (each data source and
distillation method of the registries included) becomes a row: its default, the values it allows
(from the type and the pydantic constraints) and its ``description``. A section's text is its
class docstring. The docs build (``scripts/mkdocs_hooks.py``) renders this page on every build;
nothing of it is written by hand.
"""

from __future__ import annotations

import inspect
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_results import rst_to_markdown  # noqa: E402  (a script beside this one)

__all__ = ["Row", "Section", "sections", "render"]


@dataclass(frozen=True)
class Row:
    key: str  # the key inside its section
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class Section:
    path: str  # dotted recipe path ("export.int8"; "" is the top level)
    choice: str | None  # "source: csv" for a data source, "method: kd" for a method
    model: type[BaseModel]
    rows: tuple[Row, ...]

    @property
    def title(self) -> str:
        where = f"`{self.path}`" if self.path else "Top level"
        return f"{where} ({self.choice})" if self.choice else where


def _code(text: str) -> str:
    return text if text in ("required", "(section)") else f"`{_cell(text)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _constraints(schema: dict) -> list[str]:
    out = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            out.append(f"{sign} {schema[key]}")
    if "minItems" in schema and "prefixItems" not in schema:
        out.append(f"at least {schema['minItems']} items")
    if "maxItems" in schema and "prefixItems" not in schema:
        out.append(f"at most {schema['maxItems']} items")
    if "maxLength" in schema:
        out.append(f"at most {schema['maxLength']} characters")
    if "pattern" in schema:
        out.append(f"matching `{schema['pattern']}`")
    return out


def describe_type(schema: dict, defs: dict) -> str:
    """The values a JSON-schema node allows, in words."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"section ({name})" if "properties" in defs.get(name, {}) else describe_type(defs[name], defs)
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            parts = [describe_type(s, defs) for s in schema[union] if s.get("type") != "null"]
            nullable = any(s.get("type") == "null" for s in schema[union])
            return " or ".join(parts + (["null"] if nullable else []))
    kind = schema.get("type")
    words = {"integer": "integer", "number": "number", "boolean": "true / false", "string": "text"}
    if schema.get("format") == "path":
        text = "path"
    elif kind in words:
        text = words[kind]
    elif kind == "array" and "prefixItems" in schema:
        text = "[" + ", ".join(describe_type(s, defs) for s in schema["prefixItems"]) + "]"
    elif kind == "array":
        text = f"list of {describe_type(schema.get('items', {}), defs)}"
    elif kind == "object":
        text = f"mapping of text to {describe_type(schema.get('additionalProperties', {}), defs)}"
    else:
        text = "any"
    limits = _constraints(schema)
    return f"{text} ({', '.join(limits)})" if limits else text


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return _section_default(value)
    value = to_jsonable_python(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _section_default(value: BaseModel) -> str:
    """A section's default: its keys whose value is not the key's own default (``teacher``'s
    ``arch: efficientnet_b3, epochs: 8``), or its choice (``source: trifeature``)."""
    keys = [_choice(type(value))] if _choice(type(value)) else []
    for name, field in type(value).model_fields.items():
        mine = getattr(value, name)
        if isinstance(mine, BaseModel) or (name in ("source", "method") and keys):
            continue
        if field.is_required() or mine != field.get_default(call_default_factory=True):
            keys.append(f"{field.alias or name}: {to_jsonable_python(mine)}")
    return "{" + ", ".join(keys) + "}" if keys else "(section)"


def _nested(annotation) -> list[type[BaseModel]]:
    """The section classes a field holds (one, or the choices of a tagged union)."""
    found = []
    for arg in (annotation, *typing.get_args(annotation)):
        for inner in (arg, *typing.get_args(arg)):
            if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                found.append(inner)
    return found


def _choice(model: type[BaseModel]) -> str | None:
    """``source: csv`` for a member of a tagged union (its one-value Literal tag field)."""
    for name in ("source", "method"):
        field = model.model_fields.get(name)
        if (
            field is not None
            and typing.get_origin(field.annotation) is typing.Literal
            and len(typing.get_args(field.annotation)) == 1
        ):
            return f"{name}: {typing.get_args(field.annotation)[0]}"
    return None


def sections(root: type[BaseModel] | None = None) -> list[Section]:
    """Every section of the recipe, depth first, with one row per key."""
    if root is None:
        from edgekd.recipe import Recipe

        root = Recipe
    out: list[Section] = []
    seen: set[tuple[str, type]] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        if (path, model) in seen:
            return
        seen.add((path, model))
        schema = model.model_json_schema(mode="validation")
        props, defs = schema.get("properties", {}), schema.get("$defs", {})
        rows, below = [], []
        for name, field in model.model_fields.items():
            key = field.alias or name
            nested = _nested(field.annotation)
            sub_path = f"{path}.{key}" if path else key
            if nested:
                below += [(sub, sub_path) for sub in nested]
                if len(nested) > 1:  # a tagged union: each choice is a section of its own
                    tags = sorted(c for c in (_choice(n) for n in nested) if c)
                    allowed = (
                        f"a section chosen by `{tags[0].split(':')[0]}`: "
                        + ", ".join(t.split(": ")[1] for t in tags)
                        if tags
                        else "section"
                    )
                else:
                    allowed = f"section: see `{sub_path}`"
            else:
                allowed = describe_type(props.get(key, {}), defs)
            description = field.description or ""
            if not description and len(nested) == 1:  # a section: the first line of its docstring
                description = (inspect.getdoc(nested[0]) or "").split("\n\n")[0].replace("\n", " ")
            elif not description and len(nested) > 1:
                description = "one section per choice, each below"
            elif not description and _choice(model) == f"{key}: {field.get_default()}":
                description = "picks this section"
            elif not description and key == "enabled":
                description = "turns this section on"
            rows.append(Row(key, _default(field), allowed, rst_to_markdown(description)))
        out.append(Section(path, _choice(model), model, tuple(rows)))
        for sub, sub_path in below:
            walk(sub, sub_path)

    walk(root, "")
    return out


def _doc(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return rst_to_markdown(doc) if doc and model.__doc__ is not None else ""


def render(root: type[BaseModel] | None = None) -> str:
    """The reference page: one heading and table per section."""
    lines = [
        "# Recipe reference",
        "",
        "Generated from the recipe schema (the pydantic sections under `edgekd/`: each key's type,",
        "constraints, default and `description`) by `scripts/recipe_reference.py` on every docs build.",
        "To change a line here, change the field in the code. How recipes work: [Recipes](../recipes.md).",
        "",
    ]
    for section in sections(root):
        lines += [f"## {section.title}", ""]
        doc = _doc(section.model)
        if doc and not doc.startswith("A recipe section"):
            lines += [doc, ""]
        lines += ["| key | default | allowed | description |", "| --- | --- | --- | --- |"]
        lines += [
            f"| `{r.key}` | {_code(r.default)} | {_cell(r.allowed)} | {_cell(r.description)} |"
            for r in section.rows
        ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    text = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        print(text)
