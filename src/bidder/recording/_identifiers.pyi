# The compiled scanner of `_identifiers.c`; see its comment for the tree's and edits' form.
def identifier_edits(
    body: bytes, tree: tuple[tuple[tuple[bytes, ...], tuple[int, ...], int], ...], hashing: bool
) -> list[tuple[int, int, int]] | None: ...
