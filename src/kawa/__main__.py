"""`python -m kawa` runs the command line."""

from kawa.launch import main

raise SystemExit(main())
