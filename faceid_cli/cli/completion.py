"""``faceid completion SHELL``: the shell completion script (also shipped in completions/)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import COMPLETE_VAR, SHELLS, new_app

app = new_app()


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="faceid", complete_var=COMPLETE_VAR, shell=shell).strip() + "\n"


@app.command()
def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", autocompletion=lambda incomplete: [
        s for s in SHELLS if s.startswith(incomplete)])],
) -> None:
    """Print the completion script for SHELL (commands, options, model and scheduler names).

    bash: faceid completion bash > ~/.local/share/bash-completion/completions/faceid
    zsh:  faceid completion zsh > "${fpath[1]}/_faceid"
    fish: faceid completion fish > ~/.config/fish/completions/faceid.fish
    """
    if shell not in SHELLS:
        raise typer.BadParameter(f"'{shell}' is not one of {', '.join(SHELLS)}", param_hint="'SHELL'")
    typer.echo(completion_script(shell), nl=False)
