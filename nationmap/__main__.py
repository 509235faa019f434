"""``python -m nationmap``: the CLI (what Ray job entrypoints run on the cluster)."""

from nationmap.cli.main import main

main()
