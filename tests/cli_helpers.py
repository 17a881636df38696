"""What the command-line tests share: running ``genlab`` and expecting a one-line error."""

from __future__ import annotations

import pytest

from genlab.app.cli import main


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit status 2 and exactly one stderr line ``genlab: error: ...``."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("genlab: error: ") and "Traceback" not in err
    return err.strip()
