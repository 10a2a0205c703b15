"""``labelhub.processes.signals_deferred``: a Ctrl-C or SIGTERM that lands while a child server is started is taken
once the child is recorded (CI saw ``labelhub demo``, stopped while it started, leave its backend running: the
signal's ``KeyboardInterrupt`` came between the fork and the line that records the child). In a subprocess, so that
the signal handlers are the main thread's."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import os, signal, time
    from labelhub.processes import signals_deferred

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
        recorded = None
        try:
            with signals_deferred():
                os.kill(os.getpid(), signum)
                time.sleep(0.05)  # the handler would have run by now
                recorded = "child"
            print("not interrupted")
        except KeyboardInterrupt as exc:
            print(f"{exc} after {recorded}", flush=True)
        assert signal.getsignal(signum) is interrupt
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        print("still running", flush=True)
    print("not reached")
''')


def test_a_signal_during_the_block_is_delivered_after_it_to_the_handler_it_had():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["SIGINT after child", "SIGTERM after child", "still running"], proc.stderr
    assert proc.returncode == -15  # the default action, deferred to the block's end
