"""``labelhub demo``: the whole loop on one machine (Label Studio, the backend, the sync) on real
Fashion-MNIST images (:mod:`.sample_data`).
"""
