"""Stage 1, repo files → Label Studio tasks: select files by glob, join metadata, build task payloads,
and import them through the crash-safe ledger (:mod:`labelhub.sync.files.importer`).
"""
