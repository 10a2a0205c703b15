"""The sync daemon: repo files → Label Studio tasks, and annotations → versions of the repo.

Stages, in the order the data flows: ``files`` → ``labelstudio`` → ``annotations`` → ``versions``; ``labels``
imports labels made elsewhere; ``state``, ``ledger``, ``service`` and ``daemon`` run them.
"""
