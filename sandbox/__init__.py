"""Local stand-ins for the outside services (One X, Microsoft 365, Exchange on-prem).

Used by `make run`, the tests and the benchmarks. Product code never imports this package; it
reaches the sandboxes only through configured base URLs.
"""
