"""Hop headers: a mirrored record keeps its headers and says which clusters it has been on."""

from __future__ import annotations

from bus.bridge._hops import HOP, PATH, forwarded_headers, path_of


def test_forwarded_headers_keep_the_originals_and_extend_the_path() -> None:
    original = [("ce_id", b"x"), (PATH, b"ameripol")]
    headers = forwarded_headers(original, source="interpol", destination="europol", bridge_id="b1")
    assert headers[0] == ("ce_id", b"x")
    assert [v for k, v in headers if k == PATH] == [b"ameripol,interpol"]
    assert (HOP, b"interpol->europol b1") in headers
    assert path_of(headers) == ("ameripol", "interpol")


def test_a_record_without_a_path_gets_its_source_as_path() -> None:
    headers = forwarded_headers(None, source="interpol", destination="europol", bridge_id="b1")
    assert path_of(headers) == ("interpol",)
    assert path_of(None) == ()
