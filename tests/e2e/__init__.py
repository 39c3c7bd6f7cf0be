"""End-to-end tests: the demo hub, a real browser, nbgrader (see conftest.py)."""
