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
import importlib
import sys

import click

__all__ = ["main", "COMMANDS"]

#: Each subcommand's module and click command, imported only when the command runs (or ``--help`` lists them):
#: ``labelhub worker`` then starts without the sync's and the demo's imports (huggingface_hub, numpy; 0.8 s of CPU
#: for the whole group before, measured 2026-12-07), the lazy loading of click's documentation
#: (https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands).
COMMANDS = {
    "sync": "labelhub.sync.cli:sync",
    "versions": "labelhub.sync.cli:versions",
    "diff": "labelhub.sync.cli:diff",
    "import-labels": "labelhub.sync.labels.cli:import_labels",
    "restore": "labelhub.sync.restore_cli:restore",
    "demo": "labelhub.sync.demo.command:demo",
    "backend": "labelhub.backend.cli:backend",
    "predict": "labelhub.backend.cli:predict",
    "worker": "labelhub.backend.cli:worker",
}
#: Hidden names kept for scripts: ``import-csv`` is ``import-labels``'s name from before it read COCO too.
ALIASES = {"import-csv": "import-labels"}


class LazyGroup(click.Group):
    """A click group whose subcommands (:data:`COMMANDS`) are imported by name when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The visible subcommands, sorted (as click lists a group's)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name`` (or an alias of :data:`ALIASES`, hidden), imported now; ``None`` for an unknown
        name (click then says "No such command").

        Raises:
            ImportError: When the command's module cannot be imported (a broken installation).
        """
        if cmd_name not in self.commands:
            target = COMMANDS.get(ALIASES.get(cmd_name, cmd_name))
            if target is None:
                return None
            module, _, attribute = target.partition(":")
            command = getattr(importlib.import_module(module), attribute)
            for param in command.params:  # "[env var: LABELHUB_INTERVAL]" in --help: what the docstrings promise
                if isinstance(param, click.Option) and param.envvar:
                    param.show_envvar = True
            if cmd_name in ALIASES:
                command = copy.copy(command)
                command.hidden = True
            self.add_command(command, name=cmd_name)
        return self.commands[cmd_name]

    def invoke(self, ctx: click.Context):
        """Run the subcommand; a :class:`labelhub.errors.ConfigurationError` that reaches here (raised while the
        command imports a module that refuses a setting at import: :mod:`labelhub.repos` refuses an ``HF_ENDPOINT``
        huggingface_hub cannot parse, whose own error quotes the URL's password) ends in one line and exit code 1,
        as click's own errors do, not a traceback. Its message is already redacted."""
        from labelhub.errors import ConfigurationError

        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="labelhub")
def main():
    """LabelHub: a Label Studio ML backend and a Hugging Face Hub sync daemon."""


if __name__ == "__main__":
    sys.exit(main())
