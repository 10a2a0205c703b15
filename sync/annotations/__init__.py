"""Stage 2, Label Studio → the annotation store: webhook events as hints (:mod:`.receiver`) and
reconciliation through the API as the truth (:mod:`.intake`).
"""
