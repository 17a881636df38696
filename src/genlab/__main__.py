"""``python -m genlab`` runs the CLI."""

from genlab.cli import main

raise SystemExit(main())
