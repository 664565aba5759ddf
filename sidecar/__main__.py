"""``python -m sidecar``: the same command line as the ``sidecar`` console script."""

from sidecar.cli import main

raise SystemExit(main())
