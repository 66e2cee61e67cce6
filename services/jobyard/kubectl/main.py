"""Entry point of the `kubectl-jobyard` executable (kubectl runs it as `kubectl jobyard`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the plugin; a clear message when the kubernetes client is not installed."""
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        sys.stderr.write(
            "kubectl jobyard: needs the kubernetes client: pip install 'jobyard[kubectl]'\n"
        )
        sys.exit(2)
    from jobyard.kubectl.cli import PROG, cli

    cli(prog_name=PROG)


if __name__ == "__main__":
    main()
