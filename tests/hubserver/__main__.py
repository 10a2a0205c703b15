"""`python -m tests.hubserver --root DIR --port P [--host H] [--token T]`: serve in the foreground."""

import argparse

from .server import HubServer


def main() -> None:
    """Parse arguments, start the server, block until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tests.hubserver", description=__doc__)
    parser.add_argument("--root", required=True, help="directory holding the bare git repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=None, help="token required for writes and private reads")
    args = parser.parse_args()
    server = HubServer(root=args.root, host=args.host, port=args.port, token=args.token)
    server.start()
    print(f"hubserver listening on {server.url} (root={args.root})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
