"""What every benchmark records about the machine and the code it measured (the record lives in
the package, :mod:`genlab.app.machine`, which ``genlab compare`` uses too)."""

from genlab.app.machine import cpu_model, git_state, machine, package_versions

__all__ = ["cpu_model", "git_state", "machine", "package_versions"]
