"""CLI commands (placeholder until implemented)."""

import click

COMMANDS: list[click.Command] = []
