"""``python -m statemachine`` runs the smrun command line."""
from statemachine.cli import entry

raise SystemExit(entry())
