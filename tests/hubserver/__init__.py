"""A Hugging Face Hub-compatible HTTP server for tests, backed by bare git repos on disk.

`from tests.hubserver import HubServer` — see `server.py` for the interface, `app.py` for the
routes and the huggingface_hub sources they follow, `gitstore.py` for the git side and
`faults.py` for fault injection and call counting.
"""

from .errors import HubError
from .faults import Call, Fault, Faults
from .server import HubServer

__all__ = ["Call", "Fault", "Faults", "HubError", "HubServer"]
