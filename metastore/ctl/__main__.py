"""``python -m metastore.ctl``: metastorectl without the installed script."""

from metastore.ctl.cli import main

main(prog_name="metastorectl")
