"""``python -m crsae_sort`` runs the command line."""
from .cli import main

main()
