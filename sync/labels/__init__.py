"""Labels made elsewhere → Label Studio tasks: a labels CSV or COCO file is parsed, every row checked,
and imported with predictions or annotations through the crash-safe ledger (``labelhub import-labels``).
"""
