"""``python -m genlab`` runs the CLI."""

from genlab.app.cli import main

raise SystemExit(main())
