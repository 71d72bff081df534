"""Dockerfile, .dockerignore and compose.yaml: parsed (no Docker here) and held to the CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

from filas.admin.k8s_render import WORKLOADS
from filas.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def _resolve(args: list[str]) -> click.Command:
    """The click command that ``filas ARGS`` runs (fails when a word is not a subcommand)."""
    command: click.Command = cli
    for word in args:
        if word.startswith("-"):
            break
        if not isinstance(command, click.Group):
            break  # an argument of a leaf command
        sub = command.commands.get(word)
        assert sub is not None, f"'filas {' '.join(args)}': no command {word!r}"
        command = sub
    assert not isinstance(command, click.Group), f"'filas {' '.join(args)}' is a group"
    return command


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    steps = _instructions()
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    stages = [rest for word, rest in steps if word == "FROM"]
    assert len(stages) >= 2
    assert all(s.startswith("${PYTHON_IMAGE}") for s in stages)
    runtime_start = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    runtime = steps[runtime_start:]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric uid, so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0
    assert ("COPY", "--from=build /opt/filas /opt/filas") in runtime
    (entrypoint,) = [yaml.safe_load(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    assert entrypoint[-1] == "filas"
    assert not any(word == "ADD" for word, _ in steps), "COPY only, no remote ADD"


def test_the_image_user_matches_the_pod_security_context() -> None:
    text = (ROOT / "deploy/base/processors/workloads.yaml").read_text(encoding="utf-8")
    uids = set(re.findall(r"runAsUser: (\d+)", text))
    (user,) = [rest for word, rest in _instructions() if word == "USER"]
    assert uids == {user.split(":")[0]}


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".filas", "tests"} <= ignored
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY"}
    assert not copied & ignored, "the Dockerfile copies something .dockerignore excludes"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_compose_runs_real_filas_commands_and_every_workload() -> None:
    services = _compose()["services"]
    filas_services = {n: s for n, s in services.items() if s.get("image") == "filas:local"}
    for name, service in filas_services.items():
        _resolve(service["command"])
        assert service["build"] == ".", name
    for workload in WORKLOADS:
        assert workload.name in filas_services, f"compose.yaml lacks {workload.name}"
        assert filas_services[workload.name]["command"] == list(workload.command)
    assert {"kafka", "registry", "clickhouse"} <= set(services)


def test_compose_dependencies_exist_and_wait_for_setup() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    for workload in WORKLOADS:
        deps = services[workload.name]["depends_on"]
        assert deps["schemas"]["condition"] == "service_completed_successfully"


def test_compose_kafka_is_kraft_without_zookeeper() -> None:
    services = _compose()["services"]
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in n for n in services)
    assert len(env["CLUSTER_ID"]) == 22
    assert not env["CLUSTER_ID"].startswith("-")


def _is_setting(name: str) -> bool:
    """FILAS_SECTION__FIELD[__SUB] names a field of Settings (pydantic-settings' mapping)."""
    from pydantic import BaseModel

    from filas.settings import Settings

    model: type[BaseModel] = Settings
    parts = name.removeprefix("FILAS_").lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i == len(parts) - 1:
            return True
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return False


def _filas_env_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    # deploy/grafana (the monitoring area's) uses Grafana's own ${VAR} substitution.
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        if "grafana" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        found = set(re.findall(r"\b(FILAS_[A-Z0-9_]+)\b", text))
        if found:
            names[str(path.relative_to(ROOT))] = found
    names["compose.yaml"] = set(
        re.findall(r"\b(FILAS_[A-Z0-9_]+)\b", (ROOT / "compose.yaml").read_text(encoding="utf-8"))
    )
    names["Dockerfile"] = set(
        re.findall(r"\b(FILAS_[A-Z0-9_]+)\b", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    )
    return names


def test_every_filas_variable_in_the_manifests_is_a_real_setting() -> None:
    """A misspelt FILAS_* variable is silently ignored by pydantic-settings: catch it here."""
    assert _is_setting("FILAS_RADIUS__NAS_SECRETS")
    assert _is_setting("FILAS_DELIVERY__EMAIL__HOST")
    assert not _is_setting("FILAS_RADIUS__NAS_SECRET")
    assert not _is_setting("FILAS_DELIVERY__MAIL__HOST")
    checked = 0
    for where, names in _filas_env_names().items():
        for name in names:
            assert _is_setting(name), f"{where}: {name} is not a setting (see `filas config`)"
            checked += 1
    assert checked > 40


DOCS_WITH_COMMANDS = ("deploy.md", "runbooks.md", "capacity.md", "integrations.md")


def _documented_commands() -> list[tuple[str, list[str]]]:
    """``filas <words>`` inside the code blocks of the operations docs."""
    found = []
    for doc in DOCS_WITH_COMMANDS:
        in_code = False
        for line in (ROOT / "docs" / doc).read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_code = not in_code
                continue
            if not in_code:
                continue
            code = line.split("#", 1)[0]  # not comments
            # `-n filas` is the namespace, not the CLI.
            for match in re.finditer(r"(?:^|(?<!-n)\s)filas ((?:[a-z][\w.-]*\s*)+)", code):
                found.append((doc, match.group(1).split()))
    return found


def test_commands_in_the_operations_docs_exist() -> None:
    commands = _documented_commands()
    assert len(commands) >= 5
    for doc, words in commands:
        command: click.Command = cli
        for word in words:
            if not isinstance(command, click.Group):
                break
            sub = command.commands.get(word)
            assert sub is not None, f"docs/{doc}: 'filas {' '.join(words)}': no command {word!r}"
            command = sub
        assert not isinstance(command, click.Group), f"docs/{doc}: 'filas {' '.join(words)}'"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_doc_anchors_referenced_by_deploy_and_docs_exist() -> None:
    sources = [ROOT / "docs" / d for d in (*DOCS_WITH_COMMANDS, "architecture.md")]
    sources += [ROOT / "filas/admin/k8s_render.py", ROOT / "README.md"]
    sources += sorted(p for p in (ROOT / "deploy").rglob("*.yaml") if "grafana" not in p.parts)
    sources += sorted((ROOT / "docs" / "decisions").glob("009*.md"))
    checked = 0
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for name, anchor in re.findall(r"([\w-]+\.md)#([\w-]+)", text):
            target = ROOT / "docs" / name
            assert target.exists(), f"{source.name}: {name} does not exist"
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{source.name}: {name}#{anchor}"
            checked += 1
    assert checked >= 5


def test_compose_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service["image"]
        if image == "filas:local":
            continue
        assert re.search(r":v?\d+(\.\d+)+$", image), f"{name}: {image} is not pinned to a version"
