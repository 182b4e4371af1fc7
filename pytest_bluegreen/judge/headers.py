"""The response headers by which an answer names its build: the color, the version, and the
HAProxy server that served it. One home for their default names: the settings
(``color_header``, ``version_header``, ``server_header``), the load, the checks' HTTP session
and ``bluegreen init`` all take them from here. (It lives in judge/, the lowest room that reads
them: the load counts answers per color; settings/, init/ and the face import down to it.)"""

from __future__ import annotations

__all__ = ["COLOR_HEADER", "SERVER_HEADER", "VERSION_HEADER"]

COLOR_HEADER = "X-Bluegreen-Color"
VERSION_HEADER = "X-Bluegreen-Version"
SERVER_HEADER = "X-Bluegreen-Server"  # HAProxy's: "%b/%s %si:%sp" (backend/server addr:port)
