"""The Label Studio ML backend (installed as ``labelhub.backend``): a Flask app served by gunicorn that
answers ``/health``, ``/setup``, ``/predict``, ``/webhook`` and learns from annotations in the background.
"""
