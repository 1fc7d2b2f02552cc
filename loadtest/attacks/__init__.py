"""Red-team benchmarks: each module replays one attack from issue 21 against real gateway processes.

Run one with ``PYTHONPATH=. .venv/bin/python -m loadtest.attacks.<name>``. Each starts its own
processes on loopback (the test suite's harness in ``tests/support``), measures a bystander's
delivery latency without the attack and then with it (same run, same machine), prints both and
their ratio, and stops by itself within a bounded time. The regression tests in
``tests/integration/test_attacks_*.py`` assert the bounds (closes, codes, memory); latency is a
figure reported here, never asserted in a test.
"""
