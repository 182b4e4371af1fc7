"""What a run reports: ``verdict.json``, the Allure results, the gate's own metrics,
``bluegreen status``."""
