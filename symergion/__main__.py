"""Run the CLI as ``python -m symergion``."""

from symergion.cli.main import main

raise SystemExit(main())
