"""`python -m kawa` runs the command line."""

from kawa.cli import main

raise SystemExit(main())
