"""tasks.flower: Flower starts only behind its password (or on this machine in the local
demo), and never puts the password on its command line."""
from __future__ import annotations

import pytest

from config import load_settings


def test_flower_refuses_to_start_without_basic_auth(monkeypatch):
    from config import SettingsError
    from tasks import flower
    monkeypatch.setattr(flower, "load_settings", lambda: load_settings({}))
    with pytest.raises(SettingsError, match="FLOWER_BASIC_AUTH"):
        flower.flower_command()
    monkeypatch.setattr(flower, "load_settings", lambda: load_settings({"LOCAL_DEMO": "true"}))
    assert "--address=127.0.0.1" in flower.flower_command()
    monkeypatch.setattr(flower, "load_settings",
                        lambda: load_settings({"FLOWER_BASIC_AUTH": "ops:s3cret"}))
    command = flower.flower_command()
    assert not any("s3cret" in part for part in command)
    assert not any(part.startswith("--address") for part in command)   # flower's default


def test_flower_listens_on_host_when_it_is_set(monkeypatch):
    from tasks import flower
    for extra in ({"LOCAL_DEMO": "true"}, {"FLOWER_BASIC_AUTH": "ops:s3cret"}):
        monkeypatch.setattr(flower, "load_settings",
                            lambda extra=extra: load_settings({"HOST": "10.1.2.3", **extra}))
        addresses = [p for p in flower.flower_command() if p.startswith("--address")]
        assert addresses == ["--address=10.1.2.3"]
