"""The lines `keyplane env` prints and MissingAPIKey quotes, per shell."""

from __future__ import annotations

import pytest

from keyplane.client.shells import detect_shell, setup_for

KEY = "kp_" + "A" * 36


@pytest.mark.parametrize(
    ("environ", "platform", "shell"),
    [
        pytest.param({"SHELL": "/bin/bash"}, "linux", "bash", id="bash"),
        pytest.param({"SHELL": "/usr/local/bin/zsh"}, "darwin", "zsh", id="zsh"),
        pytest.param({"SHELL": "/usr/bin/fish"}, "linux", "fish", id="fish"),
        pytest.param({"SHELL": "/usr/bin/pwsh"}, "linux", "powershell", id="pwsh"),
        pytest.param({}, "linux", "bash", id="unknown-posix"),
        pytest.param({"PROMPT": "$P$G"}, "win32", "cmd", id="cmd"),
        pytest.param({}, "win32", "powershell", id="windows-powershell"),
    ],
)
def test_detect_shell(environ: dict[str, str], platform: str, shell: str) -> None:
    assert detect_shell(environ, platform) == shell


def test_bash_and_zsh_export_in_their_rc_files() -> None:
    bash = setup_for("bash", KEY, platform="linux")
    assert bash.lines == (f"export KEYPLANE_API_KEY={KEY}",)
    assert "~/.bashrc" in bash.where
    assert "~/.bash_profile" in setup_for("bash", KEY, platform="darwin").where
    zsh = setup_for("zsh", KEY, url="http://h:1", platform="darwin")
    assert zsh.lines == (f"export KEYPLANE_API_KEY={KEY}", "export KEYPLANE_URL=http://h:1")
    assert "~/.zshrc" in zsh.where


def test_fish_reads_the_key_into_a_universal_variable() -> None:
    lines = setup_for("fish", KEY, url="http://h:1").lines
    assert lines == (
        "read --silent --universal --export --prompt-str 'Paste your key: ' KEYPLANE_API_KEY",
        "set -Ux KEYPLANE_URL 'http://h:1'",
    )


def test_powershell_on_windows_reads_the_key_into_the_user_environment() -> None:
    (line,) = setup_for("powershell", KEY, platform="win32").lines
    assert line.startswith("[Environment]::SetEnvironmentVariable('KEYPLANE_API_KEY', ")
    assert "Read-Host 'Paste your key' -AsSecureString" in line
    assert "$PROFILE" in setup_for("powershell", KEY, platform="linux").where


def test_cmd_reads_the_key_then_uses_setx() -> None:
    assert setup_for("cmd", KEY, platform="win32").lines == (
        "set /p KEYPLANE_API_KEY=Paste your key: ",
        'setx KEYPLANE_API_KEY "%KEYPLANE_API_KEY%"',
    )


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "powershell", "cmd"])
def test_no_command_to_run_carries_the_key(shell: str, platform: str) -> None:
    """A command line lands in shell history; lines for a file are added with an editor."""
    setup = setup_for(shell, KEY, url="http://h:1", platform=platform)
    if setup.where.startswith("Run"):
        assert not any(KEY in line for line in setup.lines), setup.lines
    else:
        assert "with an editor" in setup.where
        assert "history" in setup.where


def test_values_are_quoted_for_each_shell() -> None:
    odd = "it's $HOME"
    assert setup_for("bash", odd).lines[0] == "export KEYPLANE_API_KEY='it'\"'\"'s $HOME'"
    assert setup_for("fish", KEY, url=odd).lines[1] == "set -Ux KEYPLANE_URL 'it\\'s $HOME'"
    assert setup_for("powershell", odd, platform="linux").lines[0] == (
        "$env:KEYPLANE_API_KEY = 'it''s $HOME'"
    )


def test_an_unknown_shell_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shell"):
        setup_for("tcsh")
