"""Configured pools end to end: the default pool and extra pools start lazily with
their configured options; running pools keep theirs when the configuration changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import oddjob
import support
from oddjob import _config as config
from support import WAIT


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    config.reset()
    yield
    config.reset()


def test_default_pool_false_means_no_default_pool():
    oddjob.configure(default_pool=False)
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.perform("job", print)
    assert oddjob.whereis("job") is None


def test_a_renamed_default_pool_starts_lazily_with_the_configured_size():
    name = support.track("work")
    oddjob.configure(default_pool=name, pool_size=2)
    assert oddjob.whereis(name) is None
    assert oddjob.await_(oddjob.async_perform(name, abs, -1), WAIT) == 1
    assert len(oddjob.workers(name)) == 2
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.perform("job", print)


def test_extra_pools_start_lazily_the_first_time_a_call_names_them():
    email, sms = support.track("email"), support.track("sms")
    oddjob.configure(extra_pools={email: {"pool_size": 3}, sms: {}}, pool_size=2)
    assert oddjob.whereis(email) is None and oddjob.whereis(sms) is None
    oddjob.perform(email, print, end="")
    assert len(oddjob.workers(email)) == 3
    assert oddjob.whereis(sms) is None
    assert len(oddjob.pool(sms).workers) == 2  # introspection names it: it starts
    assert oddjob.supervisor(sms).options.pool_size == 2


def test_the_environment_sizes_the_default_pool(monkeypatch):
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "4")
    monkeypatch.setenv("ODDJOB_MAX_RESTARTS", "9")
    assert len(oddjob.workers("job")) == 4
    assert oddjob.supervisor("job").options.max_restarts == 9


def test_a_config_file_configures_extra_pools(monkeypatch, tmp_path):
    path = tmp_path / "oddjob.toml"
    path.write_text("pool_size = 1\n[extra_pools.reports]\npool_size = 2\n")
    monkeypatch.setenv("ODDJOB_CONFIG", str(path))
    reports = support.track("reports")
    assert len(oddjob.workers(reports)) == 2
    assert len(oddjob.workers("job")) == 1


def test_running_pools_keep_their_settings_when_configuration_changes():
    assert len(oddjob.workers("job")) == 5
    oddjob.configure(pool_size=2)
    assert len(oddjob.workers("job")) == 5
    oddjob.stop("job")
    assert len(oddjob.workers("job")) == 2  # restarted lazily, with the new setting


def test_a_pools_own_options_beat_configure(make_pool):
    oddjob.configure(pool_size=4, max_seconds=9)
    name = make_pool(1)
    assert len(oddjob.workers(name)) == 1
    assert oddjob.supervisor(name).options.max_seconds == 9


def test_a_bad_environment_value_fails_the_call_that_starts_a_pool(monkeypatch):
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "lots")
    with pytest.raises(oddjob.ConfigError, match="ODDJOB_POOL_SIZE"):
        oddjob.perform("job", print)
    assert oddjob.whereis("job") is None
