"""The tree a config is built from: dotted overrides (``section.key=value``) and the rules
for the ``model`` section, which holds the settings of its ``model.family`` only.

- :func:`parse_override` reads ``train.steps=200``; :func:`set_dotted` puts it in the tree,
  refusing a level the file holds as a plain value;
- a setting of another family is refused in one line (:func:`foreign_override`), or, for
  overrides shared by the runs of several families (``genlab compare``), skipped with a
  warning; overriding ``model.family`` keeps the file's settings the new family reads
  (:func:`switch_family`);
- runs saved before the model section was split per family hold every family's keys: those
  at the value every run wrote by default are dropped (:func:`without_foreign_keys`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
import warnings
from typing import Any

import yaml

from genlab._validate import ConfigError
from genlab.models import FAMILIES
from genlab.models.registry import plain_values

__all__ = [
    "MISSING",
    "family_defaults",
    "foreign_override",
    "lookup",
    "parse_override",
    "set_dotted",
    "switch_family",
    "without_foreign_keys",
]


def switch_family(tree: dict[str, Any], families: list[Any]) -> None:
    """An override that changes ``model.family`` keeps only the settings of the file's model
    section that the new family reads (the others described the file's family)."""
    section = tree.get("model")
    if not families or not isinstance(section, dict) or not isinstance(families[-1], str):
        return
    new = families[-1]
    if new == section.get("family", "flow_matching") or new not in FAMILIES:
        return
    tree["model"] = without_foreign_keys(
        section, FAMILIES[new].config, new, "model", family_defaults(), drop=True
    )


def foreign_override(family: Any, key: str, value: Any, shared: bool) -> bool:
    """Whether ``key`` is a model setting of other families only: refused, or with ``shared``
    skipped with a warning (an override shared by runs of several families applies where it
    can)."""
    if (
        not key.startswith("model.")
        or key == "model.family"
        or not isinstance(family, str)
        or family not in FAMILIES
    ):
        return False
    defaults = family_defaults()
    dotted = key[len("model.") :]
    if lookup(defaults[family], dotted) is not MISSING:
        return False
    readers = sorted(name for name, d in defaults.items() if lookup(d, dotted) is not MISSING)
    if not readers:
        return False  # unknown everywhere: refused with the valid keys
    what = f"{key}={value} is a setting of {owners(readers)}"
    if not shared:
        raise ConfigError(f"{what}, not of {family}; remove it or set model.family")
    warnings.warn(
        f"{what}; ignored for {family}",
        UserWarning,
        stacklevel=3,
    )
    return True


def family_defaults() -> dict[str, dict[str, Any]]:
    """Every family's model section with its default values, by family."""
    return {name: fam.config().to_dict() for name, fam in FAMILIES.items()}


def without_foreign_keys(
    data: dict[str, Any],
    cls: type,
    family: str,
    prefix: str,
    defaults: dict[str, Any],
    path: str = "",
    drop: bool = False,
) -> dict[str, Any]:
    """``data`` less the keys of other families that hold a default value (see above), or
    whatever their value with ``drop``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else key
        if key in fields:
            sub = hints[key]
            if dataclasses.is_dataclass(sub) and isinstance(value, dict):
                value = without_foreign_keys(value, sub, family, prefix, defaults, dotted, drop)  # type: ignore[arg-type]
            kept[key] = value
            continue
        readers = {name: d for name, d in defaults.items() if lookup(d, dotted) is not MISSING}
        if not readers:
            kept[key] = value  # unknown everywhere: refused by _build with the valid keys
        elif not drop and not is_default(value, dotted, readers):
            raise ConfigError(
                f"{prefix}.{dotted} applies to {owners(sorted(readers))}, not to {family}; "
                f"remove it or set {prefix}.family"
            )
    return kept


MISSING = object()


def owners(families: list[str]) -> str:
    """``model.family=a / b`` for a few families, else "the other families"."""
    return f"model.family={' / '.join(families)}" if len(families) <= 3 else "the other families"


def lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return MISSING
        tree = tree[part]
    return tree


def is_default(value: Any, dotted: str, readers: dict[str, Any]) -> bool:
    """Whether ``value`` (a plain value, or a section of them) is a default of a family."""
    if isinstance(value, dict):
        return all(is_default(v, f"{dotted}.{k}", readers) for k, v in value.items())
    return any(plain_values(value) == lookup(d, dotted) for d in readers.values())


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict; a level the file holds as a plain value (``train: 5``)
    is refused, not silently replaced by the override's section."""
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is not None and not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"{where} must be a mapping of keys to values, got {child!r}; fix it in the config "
                f"before overriding {dotted}"
            )
        if child is None:
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=200"`` -> ("train.steps", 200); the value is parsed as YAML."""
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.steps=200")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return key.strip(), value
