"""Stage 3, the annotation store → versions of the repo: CSV rows, manifest and card, one atomic
commit and one ``annotations-vN`` tag per export (:mod:`.exporter`), and the list of versions. Each project
exporting into a repo writes its own series of tags and files (:mod:`.series`).
"""
