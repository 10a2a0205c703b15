"""LabelHub's shared core: what both ``labelhub.backend`` and ``labelhub.sync`` use.

Signed file URLs, the label config reader, webhook events, repo access (Hub and local git), redaction,
the error tree and the ``labelhub`` command group; ``backend/`` and ``sync/`` never import each other.
"""

__version__ = "0.1.0"
