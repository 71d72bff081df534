"""The Kafka ACLs of deploy/base/kafka/users.yaml held to the code each process runs.

For every workload, the process's code is found from its command: the ``filas`` CLI command's
function, the modules it imports, and every project module those import (transitively). The
catalog topics that code names, the dead-letter topics it writes and the throwaway consumer
group ids it builds must be exactly what the workload's ``KafkaAccess`` grants (decision 0112):
a process that starts reading a new topic fails here until its KafkaUser allows it, and a grant
the code no longer uses fails too."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import ModuleType

import click
import pytest

from filas.admin import k8s_render
from filas.admin.k8s_render import WORKLOADS, Workload
from filas.catalog import Catalog, TopicSpec
from filas.catalog.logs import LOGS
from filas.catalog.network import ALERTS
from filas.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consumers", "producers", "streams", "filas")
# Not process code: the catalog itself (it imports every family), settings, CLI, tooling.
NOT_PROCESS_CODE = (
    "filas.catalog",
    "filas.settings",
    "filas.cli",
    "filas.admin",
    "filas.local_platform",
    "filas.homologation",
)
CATALOG = Catalog.build()


def _path(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {
        n
        for n in names
        if n.split(".")[0] in PACKAGES and not n.startswith(NOT_PROCESS_CODE) and _path(n)
    }


@cache
def _tree(module: str) -> ast.Module:
    path = _path(module)
    assert path is not None, module
    return ast.parse(path.read_text(encoding="utf-8"))


def _command_function(workload: Workload) -> ast.Module:
    """The CLI command the workload's Deployment runs: its function, plus the imports of its
    module that the function uses."""
    command: click.Command = cli
    ctx = click.Context(cli)
    for word in workload.command:
        if not isinstance(command, click.Group):
            break  # the rest are the command's options
        found = command.get_command(ctx, word)
        assert found is not None, workload.command
        command = found
    assert command.callback is not None, workload.command
    function = inspect.unwrap(command.callback)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    module_tree = ast.parse(Path(inspect.getfile(function)).read_text(encoding="utf-8"))
    for node in module_tree.body:
        if isinstance(node, ast.ImportFrom) and any(
            (a.asname or a.name) in used for a in node.names
        ):
            tree.body.insert(0, node)
    return tree


def process_code(workload: Workload) -> dict[str, ast.AST]:
    """Module name -> syntax tree of every project module the workload's process runs."""
    entry = _command_function(workload)
    trees: dict[str, ast.AST] = {"<command>": entry}
    todo = sorted(_imported(entry))
    while todo:
        module = todo.pop()
        if module in trees:
            continue
        trees[module] = _tree(module)
        todo += sorted(_imported(trees[module]) - set(trees))
    return trees


def _family(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _specs(value: object) -> list[TopicSpec]:
    if isinstance(value, TopicSpec):
        return [value]
    if isinstance(value, tuple) and value and all(isinstance(v, TopicSpec) for v in value):
        return list(value)
    return []


def named_topics(trees: dict[str, ast.AST]) -> set[str]:
    """Catalog topics the code names: imported from a family module, or ``family.NAME``."""
    topics: set[str] = set()
    for tree in trees.values():
        aliases: dict[str, ModuleType] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("filas.catalog"):
                for alias in node.names:
                    family = _family(f"{node.module}.{alias.name}")
                    if family is not None:  # `from filas.catalog import ixc_state`
                        aliases[alias.asname or alias.name] = family
                        continue
                    module = _family(str(node.module))
                    for spec in _specs(getattr(module, alias.name, None)):
                        topics.add(CATALOG.resolve(spec).name)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                for spec in _specs(getattr(aliases[node.value.id], node.attr, None)):
                    topics.add(CATALOG.resolve(spec).name)
    return topics


def writes_dead_letters(trees: dict[str, ast.AST]) -> bool:
    return any(
        isinstance(node, ast.Attribute) and node.attr == "dead_letter_for"
        for tree in trees.values()
        for node in ast.walk(tree)
    )


def throwaway_group_prefixes(trees: dict[str, ast.AST]) -> set[str]:
    """``filas-...-`` prefixes of the random group ids the code builds: f-strings
    ``"filas-<name>-{uuid...}"``, ``streams.topic_state`` feeders (``label=``) and
    ``read_topic_once(label=...)`` readers."""
    prefixes: set[str] = set()
    for module, tree in trees.items():
        if module == "streams.topic_state":
            continue  # the generic reader: its callers' labels are counted below
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                if (
                    isinstance(head, ast.Constant)
                    and isinstance(head.value, str)
                    and re.fullmatch(r"filas-[a-z-]+-", head.value)
                    and "uuid" in ast.unparse(node)
                ):
                    prefixes.add(head.value)
            if not isinstance(node, ast.Call):
                continue
            label = next(
                (
                    k.value.value
                    for k in node.keywords
                    if k.arg == "label" and isinstance(k.value, ast.Constant)
                ),
                None,
            )
            if not isinstance(label, str):
                continue
            dashed = label.replace(" ", "-")
            called = ast.unparse(node.func)
            if called.endswith("read_topic_once"):
                prefixes.add(f"filas-{dashed}-reader-")
            elif called.endswith("__init__"):
                prefixes.add(f"filas-{dashed}-")
    return prefixes


IDS = [w.name for w in WORKLOADS]


def topic_problems(workload: Workload) -> list[str]:
    """Topics the code names that the KafkaUser does not grant, and grants the code never
    uses (a lag source's topics come from settings; dead-letter topics and the logs topic are
    granted by rule)."""
    named = named_topics(process_code(workload))
    granted = k8s_render.topic_access(workload, CATALOG)
    if workload.kafka.every_topic:
        return [] if set(granted) == {t.name for t in CATALOG} else ["not every topic"]
    problems = [f"the code uses {t}: grant it" for t in sorted(named - set(granted))]
    by_rule = {t for t in granted if t.endswith(".dlq")} | {LOGS.name}
    lag_topics = {t.name for t in k8s_render.workload_topics(workload, CATALOG)}
    problems += [
        f"{t} granted, not in the code" for t in sorted(set(granted) - named - by_rule - lag_topics)
    ]
    return problems


@pytest.mark.parametrize("workload", WORKLOADS, ids=IDS)
def test_acl_topics_are_the_topics_the_code_names(workload: Workload) -> None:
    assert topic_problems(workload) == []


@pytest.mark.parametrize("workload", WORKLOADS, ids=IDS)
def test_dead_letter_grants_follow_the_code(workload: Workload) -> None:
    declared = bool(workload.kafka.dead_letters) or workload.kafka.every_topic
    assert declared == writes_dead_letters(process_code(workload)), workload.name


@pytest.mark.parametrize("workload", WORKLOADS, ids=IDS)
def test_throwaway_group_prefixes_are_the_code_s(workload: Workload) -> None:
    assert set(workload.kafka.group_prefixes) == throwaway_group_prefixes(process_code(workload))


def test_every_process_ships_logs_and_reads_only_what_it_must() -> None:
    for workload in WORKLOADS:
        granted = k8s_render.topic_access(workload, CATALOG)
        assert {"Write", "Describe"} <= granted[LOGS.name]
    # Subscriber passwords (ixc.subscribers, decision 0020): only the processes that need them.
    readers = {
        w.name
        for w in WORKLOADS
        if "Read" in k8s_render.topic_access(w, CATALOG).get("ixc.subscribers", set())
    }
    assert readers == {"clickhouse-sink", "radius-gateway", "radius-coa", "campaign-fanout"}


def test_a_missing_or_extra_grant_is_reported() -> None:
    """The check can fail: the pinger without its inventory read, or with a topic it never
    touches, is refused."""
    pinger = next(w for w in WORKLOADS if w.name == "pinger")
    without = replace(pinger, kafka=replace(pinger.kafka, reads=()))
    assert topic_problems(without) == ["the code uses ixc.devices: grant it"]
    extra = replace(pinger, kafka=replace(pinger.kafka, reads=(*pinger.kafka.reads, LOGS, ALERTS)))
    assert topic_problems(extra) == ["net.alerts granted, not in the code"]
    wrong_groups = replace(pinger, kafka=replace(pinger.kafka, group_prefixes=("filas-x-",)))
    assert set(wrong_groups.kafka.group_prefixes) != throwaway_group_prefixes(
        process_code(wrong_groups)
    )
