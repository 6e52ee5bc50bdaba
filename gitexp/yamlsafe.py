"""Safe YAML for gitexp's files: the parser every config and target file goes through.

What it owns, and its invariants:

* :class:`Loader` is PyYAML's safe loader (no Python objects) with YAML 1.2's number rules:
  ``1e-4`` is a float and ``12:00:00`` stays a string.
* :func:`load_yaml_node` composes the node tree and checks it *before* any data is built:
  duplicate keys are refused (PyYAML would keep the last one silently), and so is a document
  whose aliases would expand past :data:`MAX_YAML_NODES` ("billion laughs"), a recursive
  alias, or nesting too deep for PyYAML's recursion. The check is linear in the text however
  aliases nest. Every refusal is a :class:`YAMLRefused`, marked with its line where it has one.
* :func:`key_lines` maps dotted key paths to line numbers, for errors that name ``file:line``.

It depends on PyYAML only; it knows nothing about configs.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

import yaml

# YAML aliases make a few hundred bytes expand to billions of nodes ("billion laughs"): refuse
# a document that would build more nodes than any config needs, before building it.
MAX_YAML_NODES = 100_000


class Loader(yaml.SafeLoader):
    """Safe YAML with the number rules people expect (as in YAML 1.2, not PyYAML's 1.1).

    ``1e-4`` is a float (1.1 reads it as a string) and ``12:00:00`` stays a string (1.1
    reads it as the base-60 integer 43200).
    """


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[1-9][0-9_]*|[-+]?0|0x[0-9a-fA-F_]+)$"),
                             list("-+0123456789"))
Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


class YAMLRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that gitexp will not build: duplicate keys, alias bombs, deep nesting."""


def load_yaml(text: str) -> Any:
    """Safe YAML with duplicate keys and alias expansion checked (see :func:`load_yaml_node`)."""
    return load_yaml_node(text)[1]


def load_yaml_node(text: str) -> Tuple[Optional[yaml.Node], Any]:
    """The composed node tree (for line numbers) and the data, checked before the data is built.

    Raises :class:`yaml.YAMLError`: malformed YAML, or :class:`YAMLRefused`.
    """
    loader = Loader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, None
            _check_node(node)
            return node, loader.construct_document(node)
        except RecursionError:  # PyYAML composes and builds recursively
            raise YAMLRefused(problem="the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _node_children(node: yaml.Node) -> List[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_node(root: yaml.Node) -> None:
    """Refuse duplicate keys and documents that expand past MAX_YAML_NODES.

    An alias is the same node object as its anchor, so the size is counted per distinct node
    (memoised) and stays linear in the text, however many times aliases nest.
    """
    sizes: Dict[int, int] = {}
    open_nodes = set()  # ids on the current path: seeing one again is a recursive alias
    stack: List[Tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            open_nodes.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _node_children(node))
            if size > MAX_YAML_NODES:
                raise YAMLRefused(problem=f"the YAML expands to more than {MAX_YAML_NODES:,} values "
                                  "(aliases repeating aliases); write the values out", problem_mark=node.start_mark)
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise YAMLRefused(problem="an alias refers to a value that contains it", problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _node_children(node) if id(child) not in sizes)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    # PyYAML keeps the last of duplicate keys without a word; a config with two 'lr:' would
    # silently run with the second.
    seen: Dict[Tuple[str, str], int] = {}
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        ident = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if ident in seen:
            raise YAMLRefused(problem=f"duplicate key '{key_node.value}' (also on line {seen[ident]})",
                              problem_mark=key_node.start_mark)
        seen[ident] = line


def key_lines(node: yaml.Node, prefix: str = "") -> Dict[str, int]:
    """Map 'a.b' key paths to 1-based line numbers, from the composed YAML node tree."""
    lines: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, key + "."))
    elif isinstance(node, yaml.SequenceNode) and prefix:  # list items: 'files.0', 'files.1', ...
        for index, item in enumerate(node.value):
            lines.setdefault(f"{prefix}{index}", item.start_mark.line + 1)
    return lines
