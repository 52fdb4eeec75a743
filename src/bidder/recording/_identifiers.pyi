# The compiled scanner of `_identifiers.c`; see its comment for the tree's and edits' form.
_Tree = tuple[tuple[tuple[bytes, ...], tuple[int, ...], int], ...]

def identifier_edits(
    body: bytes, tree: _Tree, hashing: bool
) -> list[tuple[int, int, int]] | None: ...
def without_identifiers(body: bytes, tree: _Tree) -> bytes | None: ...
