"""The ``labelhub`` command line."""
import click


@click.group()
def main():
    """LabelHub: a Label Studio ML backend and a Hugging Face Hub sync daemon."""
