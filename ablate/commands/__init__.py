"""The `ablate` subcommands, one module per area; `ablate.cli` assembles them into the typer app. Heavy
imports (torch, timm, optuna, pandas) happen inside the commands that need them."""
