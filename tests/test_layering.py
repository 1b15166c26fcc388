"""Dependencies point one way: no import cycle between the parts of service/, detectors/ and
traffic/ import nothing from service/, and each default has one source."""

from __future__ import annotations

import ast
from pathlib import Path

from detectors.ladder import LadderConfig
from detectors.linkage import LinkageConfig
from service.config import DetectionConfig, LinkageSettings
from service.scoring.detection import ladder_config
from service.scoring.linkage import linkage_config

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (function-level imports count),
    relative imports resolved; `from package import name` counts as `package.name`."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def part_of(module: str) -> str | None:
    """The part of service/ a module belongs to: `service.<subpackage>` or `service.<module>`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "service" and len(parts) > 1 else None


def service_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "service").rglob("*.py"):
        source = part_of(module_name(path))
        if source is None:
            continue
        targets = {part_of(module) for module in imports(path)}
        graph.setdefault(source, set()).update(t for t in targets if t and t != source and (
            (ROOT / t.replace(".", "/")).is_dir() or (ROOT / (t.replace(".", "/") + ".py")).exists()))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_parts_of_service_import_each_other_without_a_cycle():
    graph = service_graph()
    assert "service.records" in graph["service.scoring"] and "service.records" in graph["service.review"]
    assert cycles(graph) == []


def test_scoring_and_review_sit_on_the_records_and_not_on_each_other():
    graph = service_graph()
    assert "service.review" not in graph["service.scoring"]
    assert "service.scoring" not in graph["service.review"]
    assert not graph["service.records"] & {"service.scoring", "service.review", "service.decisions"}


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_detectors_and_traffic_import_nothing_from_service():
    for package in ("detectors", "traffic"):
        for path in (ROOT / package).rglob("*.py"):
            bad = sorted(module for module in imports(path) if module.split(".")[0] == "service")
            assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_config_defaults_are_the_detectors_own():
    assert ladder_config(DetectionConfig()) == LadderConfig()
    assert linkage_config(LinkageSettings()) == LinkageConfig()
