"""``bluegreen init``: a configuration read into a plan, ``bluegreen.toml`` and the starter checks
written."""
