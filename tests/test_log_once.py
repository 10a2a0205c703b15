"""The backend's one memory of the causes already logged (backend/log_once.py)."""
import logging

from labelhub.backend import log_once


def test_a_cause_is_said_once_until_forgotten_or_pushed_out(caplog):
    caplog.set_level(logging.INFO, logger="labelhub.test_log_once")
    logger = logging.getLogger("labelhub.test_log_once")
    log_once.forget()
    for _ in range(3):
        log_once.log_once(logger, ("test", "a"), "said %s", "a")
        log_once.log_once(logger, ("test", "b"), "said %s", "b", level=logging.INFO)
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert said == [(logging.WARNING, "said a"), (logging.INFO, "said b")]
    for n in range(log_once.REMEMBERED):  # causes naming something new each time: the memory stays bounded
        log_once.first_time(("test", "new", n))
    assert log_once.first_time(("test", "a")) and not log_once.first_time(("test", "new", log_once.REMEMBERED - 1))
    log_once.forget()
    assert log_once.first_time(("test", "new", log_once.REMEMBERED - 1))
    log_once.forget()
