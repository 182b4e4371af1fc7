"""The starter check suite ``bluegreen init`` copies into a new project's ``checks/``.

The files in ``checks/`` are written out as they are here: they read everything they need
(the colors' URLs, the health path, the thresholds) from the settings ``bluegreen init`` writes
next to them, and use only the plugin's own fixtures.
"""
