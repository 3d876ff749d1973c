"""How to make ``KEYPLANE_API_KEY`` permanent, for each shell people use.

Shared by ``keyplane env`` and by :class:`~keyplane.client.errors.MissingAPIKey`'s
message, so both say exactly the same thing. Pure: it only reads the mapping
of environment variables and the platform name it is given.

No suggested command carries the key's value: a command line lands in shell
history (and in ``ps``). Lines for a start-up file are to be added with an
editor; commands to run once read the key from a hidden prompt instead.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

KEY_VARIABLE: Final = "KEYPLANE_API_KEY"
URL_VARIABLE: Final = "KEYPLANE_URL"
PLACEHOLDER: Final = "<your key>"
#: What every prompt asks; the key is pasted there, not typed into a command.
PROMPT: Final = "Paste your key"
_IN_AN_EDITOR: Final = (
    "with an editor (not with echo ... >>: a command line with the key stays in your shell history)"
)
SHELLS: Final = ("bash", "zsh", "fish", "powershell", "cmd")


@dataclass(frozen=True, slots=True)
class ShellSetup:
    """The lines to run or add, and where they go."""

    shell: str
    #: Where the lines go, in words ("Add these lines to ~/.bashrc").
    where: str
    lines: tuple[str, ...]
    #: What to do afterwards (open a new terminal, source the file).
    then: str

    def render(self) -> str:
        return "\n".join((f"# {self.where}", *self.lines, f"# {self.then}"))


def detect_shell(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The user's shell: from ``$SHELL`` on POSIX; PowerShell or cmd on Windows."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        # cmd.exe defines PROMPT for its children; PowerShell does not.
        return "cmd" if "PROMPT" in env else "powershell"
    name = PurePath(env.get("SHELL", "")).name.lower()
    if name in ("pwsh", "powershell"):
        return "powershell"
    if name in ("zsh", "fish", "bash"):
        return name
    return "bash"


def setup_for(
    shell: str, key: str = PLACEHOLDER, url: str | None = None, platform: str | None = None
) -> ShellSetup:
    """The lines that set ``KEYPLANE_API_KEY`` (and ``KEYPLANE_URL`` when given) for good."""
    platform = sys.platform if platform is None else platform
    values = [(KEY_VARIABLE, key)] + ([(URL_VARIABLE, url)] if url else [])
    if shell in ("bash", "zsh"):
        rc = "~/.zshrc" if shell == "zsh" else "~/.bashrc"
        if shell == "bash" and platform == "darwin":
            rc = "~/.bash_profile"
        return ShellSetup(
            shell,
            f"Add these lines to {rc} {_IN_AN_EDITOR}:",
            tuple(f"export {name}={shlex.quote(value)}" for name, value in values),
            f"Then open a new terminal, or run: source {rc}",
        )
    url_values = values[1:]
    if shell == "fish":
        return ShellSetup(
            shell,
            "Run once in fish; it asks for the key, hidden (a universal variable, kept in "
            "~/.config/fish/fish_variables):",
            (
                f"read --silent --universal --export --prompt-str '{PROMPT}: ' {KEY_VARIABLE}",
                *(f"set -Ux {name} {_fish_quote(value)}" for name, value in url_values),
            ),
            "It applies at once, in every fish session.",
        )
    if shell == "powershell":
        if platform.startswith("win"):
            hidden = (
                f"[Net.NetworkCredential]::new('', (Read-Host '{PROMPT}' -AsSecureString)).Password"
            )
            return ShellSetup(
                shell,
                "Run once in PowerShell; it asks for the key, hidden (stored in your Windows "
                "user environment):",
                (
                    f"[Environment]::SetEnvironmentVariable('{KEY_VARIABLE}', {hidden}, 'User')",
                    *(
                        f"[Environment]::SetEnvironmentVariable('{name}', {_ps_quote(value)}, "
                        "'User')"
                        for name, value in url_values
                    ),
                ),
                "Then open a new terminal.",
            )
        return ShellSetup(
            shell,
            f"Add these lines to your PowerShell profile (the file named by $PROFILE) "
            f"{_IN_AN_EDITOR}:",
            tuple(f"$env:{name} = {_ps_quote(value)}" for name, value in values),
            "Then open a new terminal, or run: . $PROFILE",
        )
    if shell == "cmd":
        return ShellSetup(
            shell,
            "Run once in cmd.exe; the first line asks for the key (stored in your Windows "
            "user environment):",
            (
                f"set /p {KEY_VARIABLE}={PROMPT}: ",
                f'setx {KEY_VARIABLE} "%{KEY_VARIABLE}%"',
                *(f'setx {name} "{value}"' for name, value in url_values),
            ),
            "Then open a new window: setx does not change the current one.",
        )
    raise ValueError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")


def missing_key_help(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The how-to that ends :class:`MissingAPIKey`'s message, for the user's own shell."""
    shell = detect_shell(environ, platform)
    setup = setup_for(shell, platform=platform)
    lines = "\n".join(f"    {line}" for line in setup.lines)
    return (
        f"Set {KEY_VARIABLE} to your key. For {shell}: {setup.where[0].lower()}"
        f"{setup.where[1:]}\n{lines}\n  {setup.then}\n"
        f"Or run `keyplane login` to keep the key in your system's key store, or put "
        f"{KEY_VARIABLE}=<your key> in a .env file in the working directory. "
        f"`keyplane env --shell bash|zsh|fish|powershell|cmd` prints these lines for other shells."
    )


def _fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ps_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
