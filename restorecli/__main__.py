"""``python -m restorecli`` runs the ``restore`` program."""

from restorecli.cli.app import main

main()
