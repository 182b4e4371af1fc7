"""This process and its pytest child: signals deferred while traffic moves, the child of a
``bluegreen`` command, standard streams that may be closed pipes."""
