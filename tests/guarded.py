"""Run the ``labelhub`` CLI with the loopback guard of :mod:`tests.netguard` installed.

``python -m tests.guarded sync --repo ...`` is ``labelhub sync --repo ...`` in a test subprocess.
"""
from tests import netguard

netguard.install()

if __name__ == "__main__":
    from sync.cli import main

    main(prog_name="labelhub")
