"""tests/support/demo.py's view of the seed's default ports: a port is held while something
listens on it, not while the connections a stack answered before it went down linger in
TIME_WAIT (``test_untouched`` right after ``test_demo`` skipped as "the defaults are in use")."""

from __future__ import annotations

import socket

from tests.support.demo import _port_held
from tests.support.stack import wait_for


def test_a_port_is_held_while_something_listens_and_not_after() -> None:
    listener = socket.socket()
    # as HAProxy and docker-proxy (Go) listen: a connection they accept inherits SO_REUSEADDR,
    # and its TIME_WAIT then keeps no other listener from the port
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert _port_held(port)
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    served, _ = listener.accept()
    served.close()  # the server's side closes first: it is the one left in TIME_WAIT
    wait_for(lambda: client.recv(1) == b"", 10, "the client to see the close")
    client.close()
    listener.close()
    assert _port_held(port) is False  # only TIME_WAIT is left on it: no listener


def test_a_listener_on_every_address_holds_the_port() -> None:
    """Docker publishes a port on 0.0.0.0: that holds 127.0.0.1's too."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        assert _port_held(listener.getsockname()[1])
