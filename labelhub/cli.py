"""The ``labelhub`` command group: one click group, each subcommand defined beside the code it runs.

=================  ==============================================  =========================================
command            defined in                                      runs
=================  ==============================================  =========================================
``backend``        :mod:`labelhub.backend.cli`                      the ML backend under gunicorn
``predict``        :mod:`labelhub.backend.cli`                      a project pre-annotated by a prediction job
``worker``         :mod:`labelhub.backend.cli`                      prediction batches from Redis (RQ)
``sync``           :mod:`labelhub.sync.cli`                         files → tasks, annotations → versions
``versions``       :mod:`labelhub.sync.cli`                         the list of ``annotations-vN`` versions
``diff``           :mod:`labelhub.sync.cli`                         what changed between two versions
``import-labels``  :mod:`labelhub.sync.labels.cli`                  a labels CSV or COCO file → tasks
``restore``        :mod:`labelhub.sync.restore_cli`                 a project rebuilt from a version
``demo``           :mod:`labelhub.sync.demo.command`                the whole loop on one machine
=================  ==============================================  =========================================

Every option can also be set by the environment variable named in its ``--help``.
"""
from __future__ import annotations

import copy
import sys

import click

from labelhub.backend.cli import backend, predict, worker
from labelhub.sync.cli import diff, sync, versions
from labelhub.sync.demo.command import demo
from labelhub.sync.labels.cli import import_labels
from labelhub.sync.restore_cli import restore

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="labelhub")
def main():
    """LabelHub: a Label Studio ML backend and a Hugging Face Hub sync daemon."""


for _command in (sync, versions, diff, import_labels, restore, demo, backend, predict, worker):
    main.add_command(_command)
    for _param in _command.params:  # "[env var: LABELHUB_INTERVAL]" in --help: what the docstrings promise
        if isinstance(_param, click.Option) and _param.envvar:
            _param.show_envvar = True
_alias = copy.copy(import_labels)  # the command's name before it read COCO too; kept for scripts
_alias.hidden = True
main.add_command(_alias, name="import-csv")

if __name__ == "__main__":
    sys.exit(main())
