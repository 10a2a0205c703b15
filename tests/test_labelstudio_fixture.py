import requests


def test_label_studio_accepts_legacy_and_personal_access_tokens(label_studio):
    legacy = label_studio.client()
    personal = label_studio.client(api_key=label_studio.personal_token)
    assert legacy.users.whoami().email == label_studio.username
    assert personal.users.whoami().email == label_studio.username


def test_loopback_guard_refuses_the_internet():
    import pytest

    from tests import netguard
    with pytest.raises(OSError):
        requests.get("http://93.184.216.34/", timeout=2)
    netguard.attempts.clear()
