"""``bus tail --identity``: which of the agency's TLS identities the viewer connects with."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bus.cli import main

TLS = (
    '[agencies.interpol]\nbootstrap_servers = ["127.0.0.1:9"]\n'
    '[agencies.interpol.tls]\nca_file = "ca.pem"\ncert_file = "app.pem"\nkey_file = "app.key"\n'
)


def test_an_identity_the_configuration_lacks_is_named_before_any_connection(
    tmp_path: Path,
) -> None:
    """No fallback to the applications' certificate: exit 2, the identity and table named."""
    config = tmp_path / "bus.toml"
    config.write_text(TLS, encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["tail", "--config", str(config), "--agency", "interpol", "--identity", "admin"],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "no TLS identity 'admin'" in result.stderr
    assert 'agencies.interpol.tls.identities."admin"' in result.stderr
