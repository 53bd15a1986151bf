from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.cloud import NovaCloud, NovaProcess, SimCloud


@pytest.fixture(scope="session")
def nova_process() -> Iterator[NovaProcess]:
    nova = NovaProcess()
    try:
        yield nova
    finally:
        nova.stop()


@pytest.fixture(scope="session")
def nova_cloud(nova_process: NovaProcess) -> NovaCloud:
    return NovaCloud(nova_process.endpoint)


@pytest.fixture(
    params=[
        pytest.param("sim", id="sim"),
        pytest.param("nova", id="nova", marks=[pytest.mark.nova, pytest.mark.slow]),
    ]
)
def cloud(request: pytest.FixtureRequest) -> SimCloud | NovaCloud:
    if request.param == "nova":
        nova: NovaCloud = request.getfixturevalue("nova_cloud")
        return nova
    return SimCloud()


def pytest_configure(config: pytest.Config) -> None:
    # openstacksdk warns about its own internals on every resource access.
    config.addinivalue_line("filterwarnings", "ignore::openstack.warnings.RemovedInSDK50Warning")
