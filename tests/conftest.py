"""The suite runs in two phases (the Makefile's ``test``): most tests on three pytest-xdist
workers, then the ``serial`` ones alone. Serial are the modules whose real-process swarms
need the machine to themselves to measure anything: many node processes at once, the
network-namespace testbed, a browser, the hostile tool's timed run, proof of relay
between processes. Every other test must pass beside a busy core anyway (the house rule),
and that is what the other workers are: the first phase mostly waits on processes and
timeouts (1.2 cores busy on the mean with a third worker, one core kept busy besides), so a
third worker on two cores took it from 460 s to 343 s (a fourth: 336 s)."""

from __future__ import annotations

import pytest

SERIAL_MODULES = frozenset({
    "tests/node/test_node_fidelity.py",
    "tests/node/test_node_live_swarm.py",
    "tests/node/test_node_rewards.py",
    "tests/node/test_node_files_browser.py",
    "tests/node/test_node_web_player.py",
    "tests/tools/test_tools_hostile.py",
    "tests/testbed/test_testbed.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
