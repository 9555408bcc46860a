"""``python -m statemachine`` runs the smrun command line."""
from statemachine.cli import main

raise SystemExit(main())
