"""``filas config``: every setting, its environment variable and its current value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
from pydantic import BaseModel, SecretStr

from filas.settings import Settings


def setting_rows(model: BaseModel, prefix: str = "FILAS_") -> Iterator[tuple[str, str, str]]:
    """(environment variable, type, value) for every leaf setting; secrets are masked."""
    for name, info in type(model).model_fields.items():
        value: Any = getattr(model, name)
        var = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            yield from setting_rows(value, f"{var}__")
            continue
        annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
        annotation = (
            annotation.replace("typing.", "")
            .replace("pathlib.", "")
            .replace("pydantic.types.", "")
            .replace(" | ", " or ")
        )
        if isinstance(value, SecretStr):
            shown = "(secret, empty)" if not value.get_secret_value() else "(secret, set)"
        elif value is None:
            shown = "(unset)"
        else:
            shown = str(getattr(value, "value", value))
        yield var, annotation, shown


def markdown_reference(settings: Settings) -> str:
    lines = ["| environment variable | type | default |", "|---|---|---|"]
    lines += [f"| `{var}` | {kind} | `{value}` |" for var, kind, value in setting_rows(settings)]
    return "\n".join(lines) + "\n"


@click.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
@click.pass_obj
def config(settings: Settings, markdown: bool) -> None:
    """Show every setting as its FILAS_* environment variable and the value in effect."""
    if markdown:
        click.echo(markdown_reference(settings), nl=False)
        return
    for var, _, value in setting_rows(settings):
        click.echo(f"{var}={value}")


COMMANDS: list[click.Command] = [config]
