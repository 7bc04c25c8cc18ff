"""``bus.merkle``: RFC 9162 tree hashes, inclusion proofs and their verification."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import merkle

# The test vectors of Certificate Transparency's reference implementation (RFC 6962 and RFC
# 9162 hash trees the same way): eight leaves, the root of every prefix, two proofs.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
PATHS = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _mth(data: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, written as the definition reads (recursive, on the data)."""
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(data[:k]) + _mth(data[k:])).digest()


def _path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1, PATH(m, D[n]), as the definition reads."""
    if len(data) == 1:
        return []
    k = 1
    while k * 2 < len(data):
        k *= 2
    if m < k:
        return [*_path(m, data[:k]), _mth(data[k:])]
    return [*_path(m - k, data[k:]), _mth(data[:k])]


def _data(size: int) -> list[bytes]:
    return [index.to_bytes(2, "big") for index in range(size)]


def test_leaf_and_node_hashes_use_the_rfc_prefixes() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_roots_match_the_reference_vectors() -> None:
    for size in range(1, 9):
        root, _ = merkle.tree([merkle.leaf_hash(leaf) for leaf in LEAVES[:size]])
        assert root.hex() == ROOTS[size - 1], size


@pytest.mark.parametrize(("index", "size"), sorted(PATHS))
def test_proofs_match_the_reference_vectors(index: int, size: int) -> None:
    root, proofs = merkle.tree([merkle.leaf_hash(leaf) for leaf in LEAVES[:size]])
    assert [p.hex() for p in proofs[index]] == PATHS[index, size]
    leaf = merkle.leaf_hash(LEAVES[index])
    assert merkle.root_from_proof(leaf, index, size, proofs[index]) == root


def test_trees_of_1_to_70_leaves_match_the_definition() -> None:
    """Root and every proof equal RFC 9162's recursive definitions, for every shape to 70."""
    for size in range(1, 71):
        data = _data(size)
        root, proofs = merkle.tree([merkle.leaf_hash(d) for d in data])
        assert root == _mth(data), size
        assert proofs == [_path(m, data) for m in range(size)], size
        assert max(len(p) for p in proofs) <= merkle.max_proof_length(size)


def test_every_proof_verifies_at_its_index_and_at_no_other() -> None:
    """Sizes 1 to 70: each leaf's proof gives the root at its own index, never at another."""
    for size in range(1, 71):
        leaves = [merkle.leaf_hash(d) for d in _data(size)]
        root, proofs = merkle.tree(leaves)
        for index, proof in enumerate(proofs):
            for claimed in range(-1, size + 1):
                result = merkle.root_from_proof(leaves[index], claimed, size, proof)
                assert (result == root) == (claimed == index), (size, index, claimed)


@settings(max_examples=200, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=70, unique=True),
    data=st.data(),
)
def test_a_proof_holds_only_for_its_own_leaf_and_index(
    leaves: list[bytes], data: st.DataObject
) -> None:
    """Distinct leaves: a proof gives the root for its leaf at its index only.

    The tree size is not pinned here: a proof for leaf 2 of 3 computes, read as leaf 1 of 2,
    the same hash (both are one left sibling). The batch signature covers the tree size, so
    such a reading fails the signature (tests/unit/test_envelope_batch.py).
    """
    hashed = [merkle.leaf_hash(leaf) for leaf in leaves]
    root, proofs = merkle.tree(hashed)
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1))
    assert merkle.root_from_proof(hashed[index], index, size, proofs[index]) == root
    other_index = data.draw(st.integers(-2, size + 2).filter(lambda i: i != index))
    assert merkle.root_from_proof(hashed[index], other_index, size, proofs[index]) != root
    other_leaf = merkle.leaf_hash(leaves[index] + b"x")
    assert merkle.root_from_proof(other_leaf, index, size, proofs[index]) != root


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_a_proof_with_a_hash_added_dropped_or_flipped_fails(size: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(d) for d in _data(size)]
    root, proofs = merkle.tree(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = proofs[index]
    assert merkle.root_from_proof(leaves[index], index, size, [*proof, b"\x00" * 32]) is None
    if proof:
        assert merkle.root_from_proof(leaves[index], index, size, proof[:-1]) is None
        at = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(proof[at])
        flipped[bit // 8] ^= 1 << (bit % 8)
        changed = [*proof[:at], bytes(flipped), *proof[at + 1 :]]
        assert merkle.root_from_proof(leaves[index], index, size, changed) != root
        short = [*proof[:at], proof[at][:31], *proof[at + 1 :]]
        assert merkle.root_from_proof(leaves[index], index, size, short) is None


def test_max_proof_length_is_ceil_log2() -> None:
    assert [merkle.max_proof_length(n) for n in (1, 2, 3, 4, 5, 8, 9, 256, 257, 65536)] == [
        0, 1, 2, 2, 3, 3, 4, 8, 9, 16,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="tree_size"):
        merkle.max_proof_length(0)


def test_an_empty_tree_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves"):
        merkle.tree([])
