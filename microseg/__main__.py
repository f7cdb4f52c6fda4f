"""``python -m microseg`` runs the command line."""

from microseg.cli import main

raise SystemExit(main())
