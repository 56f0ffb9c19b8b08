"""Settings: XDG roots from the environment, the TOML config file, and which registries speak plain http."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.config import RegistryConfig, Settings, is_loopback, load_settings
from sandbox.errors import ConfigError


@pytest.fixture
def home(tmp_path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "sbx" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_from_home(home):
    settings = load_settings({"HOME": str(home)})
    assert settings.data_root == home / ".local" / "share" / "sbx"
    assert settings.store_root == settings.data_root
    assert settings.config_root == home / ".config" / "sbx"
    assert settings.auth_file == home / ".config" / "sbx" / "auth.json"
    assert settings.runtime_root == Path(f"/tmp/sbx-{os.getuid()}")
    assert settings.docker_config == home / ".docker" / "config.json"
    assert settings.config_file is None
    assert settings.registries == {} and settings.insecure_registries == frozenset()
    assert settings.default_platform is None and settings.storage_driver is None


def test_xdg_variables(tmp_path, home):
    (tmp_path / "run").mkdir(mode=0o700)  # XDG_RUNTIME_DIR is used only when it is a private directory of ours
    (tmp_path / "run").chmod(0o700)
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "conf"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "DOCKER_CONFIG": str(tmp_path / "dockercfg"),
    }
    settings = load_settings(env)
    assert settings.data_root == tmp_path / "data" / "sbx"
    assert settings.config_root == tmp_path / "conf" / "sbx"
    assert settings.runtime_root == tmp_path / "run" / "sbx"
    assert settings.docker_config == tmp_path / "dockercfg" / "config.json"


def test_empty_variables_are_unset(home):
    env = {"HOME": str(home), "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": "", "XDG_RUNTIME_DIR": "", "SBX_CONFIG": ""}
    settings = load_settings(env)
    assert settings.data_root == home / ".local" / "share" / "sbx"
    assert settings.runtime_root == Path(f"/tmp/sbx-{os.getuid()}")


def test_sbx_root_overrides_data_root(tmp_path, home):
    settings = load_settings({"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "d"), "SBX_ROOT": str(tmp_path / "s")})
    assert settings.data_root == tmp_path / "s"


def test_config_file_from_xdg_config_home(home):
    path = write_config(home, 'insecure_registries = ["myhost:5000"]\n')
    settings = load_settings({"HOME": str(home)})
    assert settings.config_file == path
    assert settings.insecure_registries == frozenset({"myhost:5000"})


def test_sbx_config_points_at_the_file(tmp_path, home):
    write_config(home, 'storage_driver = "copy"\n')  # not read: SBX_CONFIG wins
    other = tmp_path / "other.toml"
    other.write_text('storage_driver = "fuse-overlayfs"\n')
    settings = load_settings({"HOME": str(home), "SBX_CONFIG": str(other)})
    assert settings.config_file == other
    assert settings.storage_driver == "fuse-overlayfs"


def test_sbx_config_missing_is_an_error(tmp_path, home):
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings({"HOME": str(home), "SBX_CONFIG": str(tmp_path / "nope.toml")})
    assert "SBX_CONFIG" in info.value.hint


def test_missing_default_config_file_is_fine(home):
    assert load_settings({"HOME": str(home)}).config_file is None


def test_full_config(home):
    write_config(
        home,
        """
default_platform = "linux/arm64"
insecure_registries = ["myhost:5000", "10.0.0.5"]
storage_driver = "overlay"

[registries."docker.io"]
mirrors = ["127.0.0.1:5000", "mirror.example.com/"]

[registries."myreg.io"]
insecure = true
""",
    )
    settings = load_settings({"HOME": str(home)})
    assert settings.default_platform == "linux/arm64"
    assert settings.storage_driver == "overlay"
    assert settings.registry("docker.io") == RegistryConfig(("127.0.0.1:5000", "mirror.example.com"), False)
    assert settings.registry("myreg.io") == RegistryConfig((), True)
    assert settings.registry("elsewhere.io") == RegistryConfig()
    assert settings.is_insecure("myreg.io")
    assert settings.is_insecure("myhost:5000")
    assert settings.is_insecure("10.0.0.5")
    assert not settings.is_insecure("myhost:5001")
    assert not settings.is_insecure("docker.io")
    # data and runtime roots are not changed by the file
    assert settings.data_root == home / ".local" / "share" / "sbx"


def test_empty_config_file(home):
    settings = load_settings({"HOME": str(home)})
    write_config(home, "")
    assert load_settings({"HOME": str(home)}).registries == settings.registries


@pytest.mark.parametrize(
    "text",
    [
        "this is not toml",
        "mirrors = [",
        'default_platform = "a"\ndefault_platform = "b"\n',
        "[registries\n",
    ],
)
def test_invalid_toml(home, text):
    write_config(home, text)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"HOME": str(home)})


def test_invalid_utf8(home):
    path = write_config(home, "")
    path.write_bytes(b'default_platform = "\xff"\n')
    with pytest.raises(ConfigError):
        load_settings({"HOME": str(home)})


def test_unreadable_config_is_config_error(home):
    path = write_config(home, "")
    path.unlink()
    path.mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"HOME": str(home)})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('registry_mirrors = ["x"]\n', "unknown setting 'registry_mirrors'"),
        ('[registry."docker.io"]\nmirrors = ["x"]\n', "unknown setting 'registry'"),
        ('[registries."docker.io"]\nmirror = ["127.0.0.1:5000"]\n', "unknown setting 'mirror'"),
        ('[registries."docker.io"]\ninsecur = true\n', "unknown setting 'insecur'"),
    ],
)
def test_unknown_keys(home, text, match):
    write_config(home, text)
    with pytest.raises(ConfigError, match=match):
        load_settings({"HOME": str(home)})


@pytest.mark.parametrize(
    "text",
    [
        'registries = "docker.io"\n',
        'registries = {"docker.io" = "mirror"}\n',
        '[registries."docker.io"]\nmirrors = "127.0.0.1:5000"\n',
        '[registries."docker.io"]\nmirrors = [1]\n',
        '[registries."docker.io"]\nmirrors = [""]\n',
        '[registries."docker.io"]\ninsecure = "yes"\n',
        'insecure_registries = "myhost:5000"\n',
        "insecure_registries = [5000]\n",
        "default_platform = 64\n",
        'storage_driver = "vfs"\n',
        "storage_driver = []\n",
    ],
)
def test_wrong_types(home, text):
    write_config(home, text)
    with pytest.raises(ConfigError):
        load_settings({"HOME": str(home)})


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:5000",
        "127.0.0.1",
        "127.0.0.1:5000",
        "127.5.5.5",
        "127.5.5.5:80",
        "[::1]:5000",
        "[::1]",
        "::1",
    ],
)
def test_loopback_is_insecure(host):
    assert is_loopback(host)
    assert Settings(Path("/d"), Path("/r"), Path("/c")).is_insecure(host)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "example.com:5000",
        "docker.io",
        "localhost.example.com",
        "127.0.0.1.example.com",
        "128.0.0.1",
        "10.0.0.1:5000",
        "[::2]:5000",
        "[fe80::1]",
        "0.0.0.0",
        "",
        "[",
    ],
)
def test_not_loopback(host):
    assert not is_loopback(host)
    assert not Settings(Path("/d"), Path("/r"), Path("/c")).is_insecure(host)


def test_layer_size_limit_and_storage_driver_override(tmp_path):
    from sandbox.config import load_settings
    from sandbox.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text('storage_driver = "overlay"\nlayer_size_limit = 1048576\n')
    env = {"HOME": str(tmp_path), "SBX_CONFIG": str(config)}
    settings = load_settings(env)
    assert (settings.storage_driver, settings.layer_size_limit) == ("overlay", 1048576)
    assert load_settings({**env, "SBX_STORAGE_DRIVER": "copy"}).storage_driver == "copy"
    with pytest.raises(ConfigError, match="unknown storage driver"):
        load_settings({**env, "SBX_STORAGE_DRIVER": "aufs"})
    config.write_text("layer_size_limit = -1\n")
    with pytest.raises(ConfigError, match="layer_size_limit"):
        load_settings(env)


def test_detach_keys_setting(tmp_path):
    from sandbox.config import load_settings
    from sandbox.errors import ConfigError

    config = tmp_path / "config.toml"
    env = {"HOME": str(tmp_path), "SBX_CONFIG": str(config)}
    config.write_text('detach_keys = "ctrl-x,x"\n')
    assert load_settings(env).detach_keys == "ctrl-x,x"
    config.write_text("detach_keys = 3\n")
    with pytest.raises(ConfigError, match="detach_keys"):
        load_settings(env)



def test_seccomp_profile_default_comes_from_the_config(tmp_path):
    from sandbox.config import load_settings
    from sandbox.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text('seccomp_profile = "ci"\n')
    assert load_settings({"HOME": str(tmp_path), "SBX_CONFIG": str(config)}).seccomp_profile == "ci"
    config.write_text("seccomp_profile = 3\n")
    with pytest.raises(ConfigError, match="seccomp_profile"):
        load_settings({"HOME": str(tmp_path), "SBX_CONFIG": str(config)})
