/* The traffic recorder's costly parts in C: where a JSON request body's identifiers are,
   for `redaction.py`, in one pass over its bytes; the hand-off queue's ring of records and
   the lines written from it, for `writer.py` and `record.py`'s writer; and (at the end of
   this file) the bid path's hand-off into the ring, `enqueue`.

   without_identifiers(body, tree, portable=False) -> bytes | None
       `body` with every identifier that is not null removed, on one line (line breaks
       between tokens become spaces): the `drop` mode, done here whole. `portable` crosses
       skipped containers with SSE2 even where AVX-512 is, so that tests check both.
   identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None
       The edits that remove or hash them, for Python to apply (the `hash` mode of a body
       the record writer leaves to Python).
   hmac_sha256(key, message, portable=False) -> bytes
       The HMAC-SHA256 digest with which the record writer hashes identifiers itself
       (`RecordRing.encode` with a hash key); exposed to be checked against `hmac`'s.

   scanner_tree(nodes) -> ScannerTree
       The identifier paths compiled by `redaction.py`, checked and laid out for the
       scanner once: a scan then needs nothing of Python's, and the record writer scans
       with the GIL let go. `nodes` is a tuple of nodes, node 0 the top-level object, each
       node a tuple (keys, targets, each): `keys` a tuple of bytes, `targets` a tuple of
       ints of the same length, `each` an int; a target is a node's index, IDENTIFIER (-2)
       or NOTHING (-1), and `each` is what every member of an object not named in `keys`,
       and every element of an array, leads to.

   `body` is a JSON text already known to be valid (the bid path decoded it); `tree` a
   ScannerTree.

   Edits come in the order of the body, none overlapping: (start, end, kind), kind one of
   the EDIT_* values below. Removing a member takes a comma with it, the one before it when
   a member was kept before it in its object, else the one after, so that the edited text
   is still JSON whichever members go. A `null` identifier is left as it is; with
   `hashing`, a string or number is hashed in place, anything else removed.

   None means "not here": the body is not a JSON object, a key on the way to an identifier
   is written with escapes (comparing it would need decoding), it nests deeper than
   MAX_DEPTH on the way to an identifier, or the text is not what the scanner expects.
   `redaction.py` then redacts it by decoding, as it does every body without this module.

   Every read is bounds-checked: whatever the bytes, the scanner returns, it never reads
   outside them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define NOTHING (-1)
#define IDENTIFIER (-2)
#define MAX_DEPTH 64

enum { EDIT_REMOVE = 0, EDIT_HASH_STRING = 1, EDIT_HASH_NUMBER = 2, EDIT_NULL = 3 };

typedef struct {
    Py_ssize_t start;
    Py_ssize_t end;
    int kind;
} Edit;

/* A key of a node, and where it leads. */
typedef struct {
    const char *text;  /* in a bytes object of the tree's `nodes` */
    Py_ssize_t length;
    uint64_t prefix;   /* its first 8 bytes (`key_prefix`): most keys are no longer */
    int target;
} TreeKey;

typedef struct {
    const TreeKey *keys;
    Py_ssize_t key_count;
    int each;
} TreeNode;

typedef struct {
    PyObject_HEAD
    PyObject *nodes;  /* the tuple it was made of, which holds the keys' bytes */
    TreeNode *node;
    TreeKey *keys;
} Tree;

typedef struct {
    const char *text;
    Py_ssize_t size;
    Py_ssize_t at;
    const Tree *tree;
    int hashing;
    int portable;     /* skipped containers crossed by SSE2 even where AVX-512 is (tests) */
    int unsupported;  /* set once the body cannot be handled here: the caller falls back */
    int no_memory;    /* set when the edits' memory ran out */
    Edit *edits;
    Py_ssize_t edit_count;
    Py_ssize_t edit_room;
} Scan;

static int scan_value(Scan *scan, int node, int depth);

static void skip_space(Scan *scan) {
    while (scan->at < scan->size) {
        char c = scan->text[scan->at];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        scan->at++;
    }
}

static int fail(Scan *scan) {
    scan->unsupported = 1;
    return -1;
}

/* Bytes that end a run of a string's text (a quote, a backslash), and bytes a skipped
   container's end is found by (those and brackets), looked up a byte at a time where
   sixteen bytes cannot be read at once. */
static unsigned char ends_text[256];
static unsigned char structural[256];

static void fill_tables(void) {
    ends_text['"'] = ends_text['\\'] = 1;
    structural['"'] = structural['{'] = structural['}'] = 1;
    structural['['] = structural[']'] = 1;
}

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Where the run of a string's text from `at` ends: at its first quote or backslash, or at
   `size`. Sixteen bytes are looked at together (SSE2, on every x86-64): slower than the
   byte loop on short keys alone, faster on the long values of the objects on the way to
   identifiers (user agents), and so on whole bodies (0.76 against 0.78 µs a benchmark
   body, scanned and copied). */
static Py_ssize_t text_run_end(const unsigned char *text, Py_ssize_t at, Py_ssize_t size) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    for (; at + 16 <= size; at += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(text + at));
        unsigned ends = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(bytes, quote), _mm_cmpeq_epi8(bytes, backslash)));
        if (ends) {
            return at + __builtin_ctz(ends);
        }
    }
#endif
    while (at < size && !ends_text[text[at]]) {
        at++;
    }
    return at;
}

/* At a '"': moves past the closing quote; `escaped` tells whether a backslash was seen. */
static int scan_string(Scan *scan, int *escaped) {
    const unsigned char *text = (const unsigned char *)scan->text;
    *escaped = 0;
    Py_ssize_t at = scan->at + 1;
    for (;;) {
        at = text_run_end(text, at, scan->size);
        if (at >= scan->size) {
            scan->at = at;
            return fail(scan);
        }
        if (text[at] == '"') {
            scan->at = at + 1;
            return 0;
        }
        *escaped = 1;
        at += 2;  /* past the escaped character, which cannot end the string */
    }
}

/* Numbers, true, false and null: runs of the characters they are written with. */
static int scan_scalar(Scan *scan) {
    Py_ssize_t start = scan->at;
    while (scan->at < scan->size) {
        char c = scan->text[scan->at];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '+' ||
              c == '.' || c == 'E')) {
            break;
        }
        scan->at++;
    }
    return scan->at > start ? 0 : fail(scan);
}

/* At `c`: steps past it and says 1; anywhere else 0. */
static int take(Scan *scan, char c) {
    if (scan->at < scan->size && scan->text[scan->at] == c) {
        scan->at++;
        return 1;
    }
    return 0;
}

/* After a member or an element: 1 past a comma (another follows), 0 past `close`. */
static int after_item(Scan *scan, char close) {
    skip_space(scan);
    if (take(scan, ',')) {
        return 1;
    }
    if (take(scan, close)) {
        return 0;
    }
    return fail(scan);
}

/* A member's value or an element, whose path leads to `target`: where it starts, and its
   first character (which says its type). */
static int scan_item(Scan *scan, int target, int depth, Py_ssize_t *start, char *first) {
    skip_space(scan);
    if (scan->at >= scan->size) {
        return fail(scan);
    }
    *start = scan->at;
    *first = scan->text[scan->at];
    return scan_value(scan, target >= 0 ? target : NOTHING, depth + 1);
}

/* The edits' memory is the raw allocator's, which needs no GIL: the writer scans without. */
static int add_edit(Scan *scan, Py_ssize_t start, Py_ssize_t end, int kind) {
    if (scan->edit_count == scan->edit_room) {
        Py_ssize_t room = scan->edit_room ? scan->edit_room * 2 : 16;
        Edit *grown = PyMem_RawRealloc(scan->edits, (size_t)room * sizeof(Edit));
        if (grown == NULL) {
            scan->no_memory = 1;
            return -1;
        }
        scan->edits = grown;
        scan->edit_room = room;
    }
    scan->edits[scan->edit_count++] = (Edit){start, end, kind};
    return 0;
}

/* What becomes of an identifier whose value starts at `first`: an edit kind, or -1 to
   leave it (null, kept in both modes). */
static int identifier_kind(Scan *scan, char first) {
    if (first == 'n') {
        return -1;
    }
    if (scan->hashing && first == '"') {
        return EDIT_HASH_STRING;
    }
    if (scan->hashing && (first == '-' || (first >= '0' && first <= '9'))) {
        return EDIT_HASH_NUMBER;
    }
    return EDIT_REMOVE;
}

/* The first 8 bytes of a key of `length` bytes, zeros after a shorter one's end: one
   compare tells most keys apart, where comparing lengths and then bytes mispredicted a
   branch per key of the node. `readable` bytes from `key` on may be read: with 8 of them
   the word is read whole and masked (copying fewer bytes into it stalled the read of it
   that followed, a store the load could not be forwarded). */
static uint64_t key_prefix(const char *key, Py_ssize_t length, Py_ssize_t readable) {
    uint64_t prefix = 0;
    if (readable >= 8) {
        memcpy(&prefix, key, 8);
        return length >= 8 ? prefix : prefix & ((UINT64_C(1) << (8 * length)) - 1);
    }
    memcpy(&prefix, key, (size_t)(length < 8 ? length : 8));
    return prefix;
}

/* The target of the key at `key` in `node`: a node, IDENTIFIER, or NOTHING. */
static int target_of(Scan *scan, int node, const char *key, Py_ssize_t length) {
    const TreeNode *entry = &scan->tree->node[node];
    uint64_t prefix = key_prefix(key, length, scan->text + scan->size - key);
    for (Py_ssize_t i = 0; i < entry->key_count; i++) {
        const TreeKey *candidate = &entry->keys[i];
        if (candidate->prefix == prefix && candidate->length == length &&
            (length <= 8 || memcmp(candidate->text + 8, key + 8, (size_t)length - 8) == 0)) {
            return candidate->target;
        }
    }
    return entry->each;
}

static int each_of(Scan *scan, int node) {
    return node < 0 ? NOTHING : scan->tree->node[node].each;
}

static int scan_object(Scan *scan, int node, int depth) {
    scan->at++;  /* '{' */
    skip_space(scan);
    if (take(scan, '}')) {
        return 0;
    }
    int kept_before = 0;   /* a member before this one stays */
    Py_ssize_t comma = -1; /* the comma before this member */
    for (;;) {
        skip_space(scan);
        if (scan->at >= scan->size || scan->text[scan->at] != '"') {
            return fail(scan);
        }
        Py_ssize_t key_start = scan->at;
        int escaped;
        if (scan_string(scan, &escaped) < 0) {
            return -1;
        }
        int target = NOTHING;
        if (node >= 0) {
            if (escaped) {
                return fail(scan);
            }
            target = target_of(scan, node, scan->text + key_start + 1, scan->at - key_start - 2);
        }
        skip_space(scan);
        if (!take(scan, ':')) {
            return fail(scan);
        }
        Py_ssize_t value_start;
        char first;
        if (scan_item(scan, target, depth, &value_start, &first) < 0) {
            return -1;
        }
        Py_ssize_t value_end = scan->at;
        int kind = target == IDENTIFIER ? identifier_kind(scan, first) : -1;
        skip_space(scan);
        Py_ssize_t next = scan->at;  /* the comma after this member, or the closing brace */
        int more = after_item(scan, '}');
        if (more < 0) {
            return -1;
        }
        if (kind == EDIT_REMOVE) {
            if (kept_before) {
                if (add_edit(scan, comma, value_end, EDIT_REMOVE) < 0) {
                    return -1;
                }
            } else if (more) {
                /* The first member kept so far: it goes with the comma after it. */
                if (add_edit(scan, key_start, next + 1, EDIT_REMOVE) < 0) {
                    return -1;
                }
            } else if (add_edit(scan, key_start, value_end, EDIT_REMOVE) < 0) {
                return -1;  /* the last member, and every one before it removed too */
            }
        } else {
            if (kind >= 0 && add_edit(scan, value_start, value_end, kind) < 0) {
                return -1;
            }
            kept_before = 1;
        }
        if (!more) {
            return 0;
        }
        comma = next;
    }
}

static int scan_array(Scan *scan, int node, int depth) {
    scan->at++;  /* '[' */
    skip_space(scan);
    if (take(scan, ']')) {
        return 0;
    }
    int each = each_of(scan, node);
    for (;;) {
        Py_ssize_t value_start;
        char first;
        if (scan_item(scan, each, depth, &value_start, &first) < 0) {
            return -1;
        }
        if (each == IDENTIFIER) {
            int kind = identifier_kind(scan, first);
            /* An element cannot be removed without renumbering the rest: it becomes null. */
            if (kind == EDIT_REMOVE) {
                kind = EDIT_NULL;
            }
            if (kind >= 0 && add_edit(scan, value_start, scan->at, kind) < 0) {
                return -1;
            }
        }
        int more = after_item(scan, ']');
        if (more <= 0) {
            return more;
        }
    }
}

#if defined(__SSE2__)
/* Where SSE2 is (every x86-64), a skipped container is crossed 64 bytes at a time, as
   simdjson finds structure: bit masks of the block's quotes and brackets, the bytes inside
   strings found by a running XOR of the quotes (a prefix XOR), and only the brackets outside
   strings counted, one set bit at a time. A block with a backslash in it (an escape, which
   could hide a quote) is left to the byte loop. */
typedef struct {
    uint64_t quotes, backslashes, opens, closes;
} Block;

static inline uint64_t bits_of(__m128i a, __m128i b, __m128i c, __m128i d, __m128i byte) {
    return (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, byte)) |
           (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, byte)) << 16 |
           (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(c, byte)) << 32 |
           (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(d, byte)) << 48;
}

static inline Block classify(const unsigned char *text) {
    __m128i a = _mm_loadu_si128((const __m128i *)text);
    __m128i b = _mm_loadu_si128((const __m128i *)(text + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(text + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(text + 48));
    /* '[' and ']' are '{' and '}' without bit 5, and no other byte is: one compare each. */
    __m128i bit5 = _mm_set1_epi8(0x20);
    Block block = {
        bits_of(a, b, c, d, _mm_set1_epi8('"')),
        bits_of(a, b, c, d, _mm_set1_epi8('\\')),
        bits_of(_mm_or_si128(a, bit5), _mm_or_si128(b, bit5), _mm_or_si128(c, bit5),
                _mm_or_si128(d, bit5), _mm_set1_epi8('{')),
        bits_of(_mm_or_si128(a, bit5), _mm_or_si128(b, bit5), _mm_or_si128(c, bit5),
                _mm_or_si128(d, bit5), _mm_set1_epi8('}')),
    };
    return block;
}

/* Bit i set when an odd number of bits 0..i of `bits` are. */
static inline uint64_t prefix_xor(uint64_t bits) {
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits ^= bits << 16;
    bits ^= bits << 32;
    return bits;
}

/* Crosses whole blocks from `scan->at`, `*nesting` brackets deep: 1 when the container ends
   in them (`scan->at` past it), 0 when a block with a backslash or the body's last 63 bytes
   come first (`scan->at` at that block, outside any string), -1 on an error. Written once
   for every way of classifying a block (`skip_blocks_sse2`, `skip_blocks_avx512`): inlined
   into each, with its `classify`. */
static inline __attribute__((always_inline)) int skip_blocks_with(
    Scan *scan, Py_ssize_t *nesting, Block (*classify_block)(const unsigned char *)) {
    const unsigned char *text = (const unsigned char *)scan->text;
    uint64_t inside = 0; /* all ones when the block before ended inside a string */
    while (scan->at + 64 <= scan->size) {
        Block block = classify_block(text + scan->at);
        if (block.backslashes) {
            break;
        }
        uint64_t strings = prefix_xor(block.quotes) ^ inside;
        uint64_t opens = block.opens & ~strings;
        uint64_t brackets = opens | (block.closes & ~strings);
        for (; brackets; brackets &= brackets - 1) {
            int bit = __builtin_ctzll(brackets);
            if ((opens >> bit) & 1) {
                ++*nesting;
            } else if (--*nesting == 0) {
                scan->at += bit + 1;
                return 1;
            }
        }
        inside = (uint64_t)((int64_t)strings >> 63);
        scan->at += 64;
    }
    if (inside) {
        /* The string the last block ended in goes on into bytes left to the byte loop: its
           end is found here (the byte before `at`, in that string, is not a backslash). */
        int escaped;
        scan->at--;
        return scan_string(scan, &escaped);
    }
    return 0;
}

static int skip_blocks_sse2(Scan *scan, Py_ssize_t *nesting) {
    return skip_blocks_with(scan, nesting, classify);
}

typedef int (*SkipBlocks)(Scan *scan, Py_ssize_t *nesting);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* With AVX-512BW a block is one load, and each kind of byte one compare straight into a
   64-bit mask: a fraction of the SSE2 block's 16 compares and moves (the scan took about
   a fifth of the writer's time). */
__attribute__((target("avx512bw"))) static inline Block classify_avx512(
    const unsigned char *text) {
    __m512i bytes = _mm512_loadu_si512((const void *)text);
    __m512i folded = _mm512_or_si512(bytes, _mm512_set1_epi8(0x20));
    Block block = {
        _mm512_cmpeq_epi8_mask(bytes, _mm512_set1_epi8('"')),
        _mm512_cmpeq_epi8_mask(bytes, _mm512_set1_epi8('\\')),
        _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8('{')),
        _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8('}')),
    };
    return block;
}

__attribute__((target("avx512bw"))) static int skip_blocks_avx512(Scan *scan,
                                                                   Py_ssize_t *nesting) {
    return skip_blocks_with(scan, nesting, classify_avx512);
}

/* The fastest way this CPU (and its OS, which must save the wider registers) has. */
static SkipBlocks fastest_skip_blocks(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") ? skip_blocks_avx512 : skip_blocks_sse2;
}
#else
static SkipBlocks fastest_skip_blocks(void) { return skip_blocks_sse2; }
#endif

/* Chosen when the module is loaded. */
static SkipBlocks skip_blocks = skip_blocks_sse2;
#endif

/* An object or array off every path: only its end is wanted, so only strings and brackets
   are looked at (the body is known to be valid JSON), and without recursion. */
static int skip_container(Scan *scan) {
    const unsigned char *text = (const unsigned char *)scan->text;
    Py_ssize_t nesting = 0;
    for (;;) {
        Py_ssize_t bytes_until = PY_SSIZE_T_MAX; /* the byte loop's end; blocks after it */
#if defined(__SSE2__)
        int ended = (scan->portable ? skip_blocks_sse2 : skip_blocks)(scan, &nesting);
        if (ended != 0) {
            return ended > 0 ? 0 : -1;
        }
        bytes_until = scan->at + 64;
#endif
        while (scan->at < scan->size && scan->at < bytes_until) {
            if (!structural[text[scan->at]]) {
                scan->at++;
                continue;
            }
            char c = scan->text[scan->at];
            if (c == '"') {
                int escaped;
                if (scan_string(scan, &escaped) < 0) {
                    return -1;
                }
                continue;
            }
            if (c == '{' || c == '[') {
                nesting++;
            } else if ((c == '}' || c == ']') && --nesting == 0) {
                scan->at++;
                return 0;
            }
            scan->at++;
        }
        if (scan->at >= scan->size) {
            return fail(scan);
        }
    }
}

static int scan_value(Scan *scan, int node, int depth) {
    if (depth > MAX_DEPTH) {
        return fail(scan);
    }
    skip_space(scan);
    if (scan->at >= scan->size) {
        return fail(scan);
    }
    char c = scan->text[scan->at];
    if (node == NOTHING && (c == '{' || c == '[')) {
        return skip_container(scan);
    }
    if (c == '{') {
        return scan_object(scan, node, depth);
    }
    if (c == '[') {
        return scan_array(scan, node, depth);
    }
    if (c == '"') {
        int escaped;
        return scan_string(scan, &escaped);
    }
    return scan_scalar(scan);
}

/* Scans `text`: 1 with its edits in `scan`, 0 when it is not handled here, -1 when memory
   ran out (no exception set: it runs without the GIL too). `scan` starts zeroed, or as a
   scan before left it (its memory for edits is used again); the caller frees `scan->edits`
   with PyMem_RawFree. */
static int scan_body(Scan *scan, const char *text, Py_ssize_t size, const Tree *tree,
                     int hashing) {
    *scan = (Scan){text, size, 0, tree, hashing, scan->portable, 0, 0, scan->edits, 0,
                   scan->edit_room};
    skip_space(scan);
    if (scan->at >= scan->size || scan->text[scan->at] != '{') {
        return 0;
    }
    if (scan_value(scan, 0, 0) == 0) {
        skip_space(scan);
        if (scan->at != scan->size) {
            scan->unsupported = 1;
        }
    }
    if (scan->no_memory) {
        return -1;
    }
    return scan->unsupported ? 0 : 1;
}

/* ---- The tree ------------------------------------------------------------------------ */

static void tree_dealloc(Tree *tree) {
    PyMem_Free(tree->node);
    PyMem_Free(tree->keys);
    Py_XDECREF(tree->nodes);
    Py_TYPE(tree)->tp_free((PyObject *)tree);
}

/* It holds only a tuple of bytes and ints, which cannot lead back to it: not tracked by
   the garbage collector. */
static PyTypeObject TreeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bidder.recording._speedups.ScannerTree",
    .tp_basicsize = sizeof(Tree),
    .tp_dealloc = (destructor)tree_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_doc = "The identifier paths as the scanner follows them; made by scanner_tree().",
};

/* `value` as a target in a tree of `node_count` nodes: 0, or -1 with ValueError set. */
static int tree_target(PyObject *value, Py_ssize_t node_count, int *target) {
    long number = PyLong_Check(value) ? PyLong_AsLong(value) : LONG_MIN;
    if (number == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        number = LONG_MIN;
    }
    if (number < IDENTIFIER || number >= node_count) {
        PyErr_Format(PyExc_ValueError,
                     "a target must be a node's index (0 to %zd), -1 or -2, not %R",
                     node_count - 1, value);
        return -1;
    }
    *target = (int)number;
    return 0;
}

/* Whether `node` is (keys, targets, each): a tuple of bytes, a tuple as long, anything. */
static int is_node(PyObject *node) {
    if (!PyTuple_Check(node) || PyTuple_GET_SIZE(node) != 3 ||
        !PyTuple_Check(PyTuple_GET_ITEM(node, 0)) || !PyTuple_Check(PyTuple_GET_ITEM(node, 1)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(node, 0)) != PyTuple_GET_SIZE(PyTuple_GET_ITEM(node, 1))) {
        return 0;
    }
    PyObject *keys = PyTuple_GET_ITEM(node, 0);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, i))) {
            return 0;
        }
    }
    return 1;
}

static PyObject *scanner_tree(PyObject *module, PyObject *nodes) {
    (void)module;
    if (!PyTuple_Check(nodes) || PyTuple_GET_SIZE(nodes) == 0 ||
        PyTuple_GET_SIZE(nodes) > INT_MAX) {
        PyErr_SetString(PyExc_TypeError, "nodes must be a tuple of 1 node or more");
        return NULL;
    }
    Py_ssize_t node_count = PyTuple_GET_SIZE(nodes), key_count = 0;
    for (Py_ssize_t i = 0; i < node_count; i++) {
        PyObject *node = PyTuple_GET_ITEM(nodes, i);
        if (!is_node(node)) {
            PyErr_Format(PyExc_TypeError,
                         "node %zd must be (keys: tuple[bytes, ...], targets: tuple[int, ...] "
                         "as long, each: int), not %R", i, node);
            return NULL;
        }
        key_count += PyTuple_GET_SIZE(PyTuple_GET_ITEM(node, 0));
    }
    Tree *tree = PyObject_New(Tree, &TreeType);
    if (tree == NULL) {
        return NULL;
    }
    tree->nodes = Py_NewRef(nodes);
    tree->node = PyMem_New(TreeNode, node_count);
    tree->keys = PyMem_New(TreeKey, key_count ? key_count : 1);
    if (tree->node == NULL || tree->keys == NULL) {
        Py_DECREF(tree);
        return PyErr_NoMemory();
    }
    TreeKey *key = tree->keys;
    for (Py_ssize_t i = 0; i < node_count; i++) {
        PyObject *node = PyTuple_GET_ITEM(nodes, i);
        PyObject *keys = PyTuple_GET_ITEM(node, 0), *targets = PyTuple_GET_ITEM(node, 1);
        tree->node[i] = (TreeNode){key, PyTuple_GET_SIZE(keys), NOTHING};
        if (tree_target(PyTuple_GET_ITEM(node, 2), node_count, &tree->node[i].each) < 0) {
            Py_DECREF(tree);
            return NULL;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++, key++) {
            PyObject *text = PyTuple_GET_ITEM(keys, k);
            *key = (TreeKey){PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text),
                             key_prefix(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text),
                                        PyBytes_GET_SIZE(text)),
                             NOTHING};
            if (tree_target(PyTuple_GET_ITEM(targets, k), node_count, &key->target) < 0) {
                Py_DECREF(tree);
                return NULL;
            }
        }
    }
    return (PyObject *)tree;
}

/* ---- HMAC-SHA256 ----------------------------------------------------------------------

   What `hash` mode writes for an identifier: the hex HMAC-SHA256 (RFC 2104 over FIPS 180-4's
   SHA-256) of its text, as `hmac.digest(key, text, "sha256")` computes it, here so that the
   writer hashes without the GIL. The key's two padded blocks are compressed once
   (`hmac_key`); each identifier then costs two compressions. */

static const uint32_t sha256_round[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};
static const uint32_t sha256_initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                           0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

#define ROTATE_RIGHT(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_compress_portable(uint32_t state[8], const unsigned char block[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTATE_RIGHT(w[i - 15], 7) ^ ROTATE_RIGHT(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTATE_RIGHT(w[i - 2], 17) ^ ROTATE_RIGHT(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTATE_RIGHT(e, 6) ^ ROTATE_RIGHT(e, 11) ^ ROTATE_RIGHT(e, 25)) +
                      ((e & f) ^ (~e & g)) + sha256_round[i] + w[i];
        uint32_t t2 = (ROTATE_RIGHT(a, 2) ^ ROTATE_RIGHT(a, 13) ^ ROTATE_RIGHT(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

typedef void (*Sha256Compress)(uint32_t state[8], const unsigned char block[64]);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The same compression with the CPU's SHA instructions (SHA-NI, on x86-64 since Goldmont
   and Zen), four to five times faster: the state is kept as the instructions want it, two
   registers of lanes (A, B, E, F) and (C, D, G, H); each instruction does two rounds. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_compress_ni(
    uint32_t state[8], const unsigned char block[64]) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
    __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
    __m128i abef = _mm_alignr_epi8(dcba, hgfe, 8);
    __m128i cdgh = _mm_blend_epi16(hgfe, dcba, 0xF0);
    const __m128i abef_before = abef, cdgh_before = cdgh;
    __m128i w[16];
    for (int g = 0; g < 4; g++) {
        w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * g)), byte_swap);
    }
    for (int g = 4; g < 16; g++) {
        __m128i sum = _mm_add_epi32(_mm_sha256msg1_epu32(w[g - 4], w[g - 3]),
                                    _mm_alignr_epi8(w[g - 1], w[g - 2], 4));
        w[g] = _mm_sha256msg2_epu32(sum, w[g - 1]);
    }
    for (int g = 0; g < 16; g++) {
        __m128i words =
            _mm_add_epi32(w[g], _mm_loadu_si128((const __m128i *)&sha256_round[4 * g]));
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, words);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(words, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_before);
    cdgh = _mm_add_epi32(cdgh, cdgh_before);
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* Asked as `fastest_skip_blocks` asks, of the compiler's own record of the CPU. */
static Sha256Compress fastest_compress(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") &&
                   __builtin_cpu_supports("ssse3")
               ? sha256_compress_ni
               : sha256_compress_portable;
}
#else
static Sha256Compress fastest_compress(void) { return sha256_compress_portable; }
#endif

/* The fastest compression this CPU has, chosen as the module loads. */
static Sha256Compress sha256_compress = sha256_compress_portable;

/* The SHA-256 digest of `prefix` bytes already compressed into `state` followed by
   `message`: its blocks, then the last with the padding and the length in bits. */
static void sha256_finish(Sha256Compress compress, uint32_t state[8], uint64_t prefix,
                          const unsigned char *message, Py_ssize_t length,
                          unsigned char digest[32]) {
    uint64_t bits = (prefix + (uint64_t)length) * 8;
    for (; length >= 64; message += 64, length -= 64) {
        compress(state, message);
    }
    unsigned char last[128] = {0};
    memcpy(last, message, (size_t)length);
    last[length] = 0x80;
    int blocks = length < 56 ? 1 : 2;
    for (int i = 0; i < 8; i++) {
        last[64 * blocks - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    for (int i = 0; i < blocks; i++) {
        compress(state, last + 64 * i);
    }
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char)(state[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(state[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(state[i] >> 8);
        digest[4 * i + 3] = (unsigned char)state[i];
    }
}

/* A key's inner and outer states (SHA-256 after its block XORed with 0x36, and with 0x5c)
   and the compression its hashes use. */
typedef struct {
    uint32_t inner[8], outer[8];
    Sha256Compress compress;
} HmacKey;

static void hmac_key(HmacKey *key, const unsigned char *secret, Py_ssize_t length,
                     Sha256Compress compress) {
    unsigned char block[64] = {0};
    key->compress = compress;
    if (length > 64) {
        uint32_t state[8];
        memcpy(state, sha256_initial, sizeof state);
        sha256_finish(compress, state, 0, secret, length, block);
    } else {
        memcpy(block, secret, (size_t)length);
    }
    unsigned char inner[64], outer[64];
    for (int i = 0; i < 64; i++) {
        inner[i] = block[i] ^ 0x36;
        outer[i] = block[i] ^ 0x5c;
    }
    memcpy(key->inner, sha256_initial, sizeof key->inner);
    memcpy(key->outer, sha256_initial, sizeof key->outer);
    compress(key->inner, inner);
    compress(key->outer, outer);
}

static void hmac_sha256(const HmacKey *key, const unsigned char *message, Py_ssize_t length,
                        unsigned char digest[32]) {
    uint32_t state[8];
    unsigned char inner[32];
    memcpy(state, key->inner, sizeof state);
    sha256_finish(key->compress, state, 64, message, length, inner);
    memcpy(state, key->outer, sizeof state);
    sha256_finish(key->compress, state, 64, inner, 32, digest);
}

/* hmac_sha256(key, message, portable=False): `portable` forces the compression written in
   plain C where the CPU's is used, so that tests check both. */
static PyObject *hmac_sha256_digest(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer secret, message;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*y*|p", &secret, &message, &portable)) {
        return NULL;
    }
    HmacKey key;
    unsigned char digest[32];
    hmac_key(&key, secret.buf, secret.len,
             portable ? sha256_compress_portable : sha256_compress);
    hmac_sha256(&key, message.buf, message.len, digest);
    PyBuffer_Release(&secret);
    PyBuffer_Release(&message);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

/* ---- Redaction ----------------------------------------------------------------------- */

static PyObject *identifier_edits(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *tree;
    int hashing;
    if (!PyArg_ParseTuple(args, "y*O!p", &body, &TreeType, &tree, &hashing)) {
        return NULL;
    }
    Scan scan = {0};
    int scanned = scan_body(&scan, body.buf, body.len, (Tree *)tree, hashing);
    PyObject *answer = NULL;
    if (scanned == 0) {
        answer = Py_NewRef(Py_None);
    } else if (scanned < 0) {
        PyErr_NoMemory();
    } else if ((answer = PyList_New(scan.edit_count)) != NULL) {
        for (Py_ssize_t i = 0; i < scan.edit_count; i++) {
            Edit edit = scan.edits[i];
            PyObject *item = Py_BuildValue("(nni)", edit.start, edit.end, edit.kind);
            if (item == NULL) {
                Py_CLEAR(answer);
                break;
            }
            PyList_SET_ITEM(answer, i, item);
        }
    }
    PyMem_RawFree(scan.edits);
    PyBuffer_Release(&body);
    return answer;
}

/* Copies `length` bytes, line breaks turned into spaces. */
static char *copy_on_one_line(char *to, const char *from, Py_ssize_t length) {
    for (Py_ssize_t i = 0; i < length; i++) {
        char c = from[i];
        to[i] = (c == '\n' || c == '\r') ? ' ' : c;
    }
    return to + length;
}

/* A hashed identifier as written: its hex digest between quotes. */
#define HASHED_SIZE 66

/* The size of the scanned body once its edits are made: removals and nulls (`drop` mode),
   and digests in place of values (`hash` mode). */
static Py_ssize_t edited_size(const Scan *scan) {
    Py_ssize_t size = scan->size;
    for (Py_ssize_t i = 0; i < scan->edit_count; i++) {
        size -= scan->edits[i].end - scan->edits[i].start;
        if (scan->edits[i].kind == EDIT_NULL) {
            size += 4;
        } else if (scan->edits[i].kind == EDIT_HASH_STRING ||
                   scan->edits[i].kind == EDIT_HASH_NUMBER) {
            size += HASHED_SIZE;
        }
    }
    return size;
}

/* Whether every string to hash is its own text between quotes (no escape to decode). */
static int hashes_plain_strings(const Scan *scan) {
    for (Py_ssize_t i = 0; i < scan->edit_count; i++) {
        Edit edit = scan->edits[i];
        if (edit.kind == EDIT_HASH_STRING &&
            memchr(scan->text + edit.start, '\\', (size_t)(edit.end - edit.start)) != NULL) {
            return 0;
        }
    }
    return 1;
}

static char *put_hashed(char *to, const HmacKey *key, const char *text, Py_ssize_t length) {
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[32];
    hmac_sha256(key, (const unsigned char *)text, length, digest);
    *to++ = '"';
    for (int i = 0; i < 32; i++) {
        *to++ = hex[digest[i] >> 4];
        *to++ = hex[digest[i] & 15];
    }
    *to++ = '"';
    return to;
}

/* Writes the scanned body with its edits made, on one line, its identifiers hashed under
   `key` (NULL when the scan was for `drop`, which has no hash edits); returns the end of
   what it wrote. A string to hash is its text between quotes (`hashes_plain_strings`). */
static char *write_edited(char *to, const Scan *scan, const HmacKey *key) {
    static const char null[] = "null";
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < scan->edit_count; i++) {
        Edit edit = scan->edits[i];
        to = copy_on_one_line(to, scan->text + at, edit.start - at);
        if (edit.kind == EDIT_NULL) {
            to = copy_on_one_line(to, null, 4);
        } else if (edit.kind == EDIT_HASH_STRING) {
            to = put_hashed(to, key, scan->text + edit.start + 1, edit.end - edit.start - 2);
        } else if (edit.kind == EDIT_HASH_NUMBER) {
            to = put_hashed(to, key, scan->text + edit.start, edit.end - edit.start);
        }
        at = edit.end;
    }
    return copy_on_one_line(to, scan->text + at, scan->size - at);
}

static PyObject *without_identifiers(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *tree;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*O!|p", &body, &TreeType, &tree, &portable)) {
        return NULL;
    }
    Scan scan = {0};
    scan.portable = portable;
    int scanned = scan_body(&scan, body.buf, body.len, (Tree *)tree, 0);
    PyObject *answer = NULL;
    if (scanned == 0) {
        answer = Py_NewRef(Py_None);
    } else if (scanned < 0) {
        PyErr_NoMemory();
    } else {
        answer = PyBytes_FromStringAndSize(NULL, edited_size(&scan));
        if (answer != NULL) {
            write_edited(PyBytes_AS_STRING(answer), &scan, NULL);
        }
    }
    PyMem_RawFree(scan.edits);
    PyBuffer_Release(&body);
    return answer;
}

/* ---- Records -------------------------------------------------------------------------

   A record's line, written from its parts as `record.py`'s `RecordEncoder.encode` writes
   it, byte for byte (see `RecordRing.encode` below); and an `Entry`'s fields, read when
   Python hands one to the ring. */

static PyObject *field_names[9];
enum {
    F_REQUEST_ID, F_ARRIVAL, F_HEADERS, F_BODY, F_STATUS, F_ELAPSED, F_MODEL_VERSION,
    F_REASON, F_IMPS, FIELD_COUNT
};
static const char *const field_texts[FIELD_COUNT] = {
    "request_id", "arrival", "headers", "body", "status", "elapsed", "model_version",
    "reason", "imps",
};
/* A record's variable parts, in the order the ring lays them out. */
enum { PART_ID, PART_HEADERS, PART_BODY, PART_MODEL_VERSION, PART_REASON, PART_IMPS, PART_COUNT };

typedef struct {
    char *data;
    Py_ssize_t size;
    Py_ssize_t room;
} Output;

/* Makes room for `more` bytes; -1 when memory runs out. The memory is the raw allocator's
   (freed with PyMem_RawFree), which needs no GIL: the writer encodes without. */
static int grow(Output *out, Py_ssize_t more) {
    if (out->size + more <= out->room) {
        return 0;
    }
    Py_ssize_t room = out->room ? out->room : 256;
    while (room < out->size + more) {
        room *= 2;
    }
    char *grown = PyMem_RawRealloc(out->data, (size_t)room);
    if (grown == NULL) {
        return -1;
    }
    out->data = grown;
    out->room = room;
    return 0;
}

/* `grow` with the GIL held: -1 with MemoryError set. */
static int reserve(Output *out, Py_ssize_t more) {
    if (grow(out, more) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static char *put(char *to, const char *from, Py_ssize_t length) {
    memcpy(to, from, (size_t)length);
    return to + length;
}

#define PUT_LITERAL(to, text) put((to), (text), (Py_ssize_t)sizeof(text) - 1)

/* Whether `text` is well-formed UTF-8, as Python's strict decoder sees it (no overlong
   forms, no surrogates, nothing past U+10FFFF). */
static int is_utf8(const unsigned char *text, Py_ssize_t size) {
    Py_ssize_t at = 0;
    while (at < size) {
        /* ASCII, the usual body, eight bytes at a time. */
        uint64_t word;
        while (at + 8 <= size && (memcpy(&word, text + at, 8), (word & 0x8080808080808080u) == 0)) {
            at += 8;
        }
        if (at >= size) {
            break;
        }
        unsigned char c = text[at];
        if (c < 0x80) {
            at++;
            continue;
        }
        Py_ssize_t length;
        unsigned char low = 0x80, high = 0xBF;  /* the second byte's range */
        if (c >= 0xC2 && c <= 0xDF) {
            length = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            length = 3;
            if (c == 0xE0) {
                low = 0xA0;
            } else if (c == 0xED) {
                high = 0x9F;
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            length = 4;
            if (c == 0xF0) {
                low = 0x90;
            } else if (c == 0xF4) {
                high = 0x8F;
            }
        } else {
            return 0;
        }
        if (at + length > size || text[at + 1] < low || text[at + 1] > high) {
            return 0;
        }
        for (Py_ssize_t i = 2; i < length; i++) {
            if ((text[at + i] & 0xC0) != 0x80) {
                return 0;
            }
        }
        at += length;
    }
    return 1;
}

/* Whether JSON writes `text` between quotes as it is: no control character, quote or
   backslash, and no byte above `highest`. */
static int unescaped(const char *text, Py_ssize_t length, unsigned char highest) {
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c > highest || c == '"' || c == '\\') {
            return 0;
        }
    }
    return 1;
}

/* `value`'s UTF-8 when it is a string JSON writes as it is (between quotes, no escapes); a
   subclass (the no-bid reasons are a StrEnum) is written as its text, as msgspec does. */
static const char *plain_string(PyObject *value, Py_ssize_t *length) {
    if (!PyUnicode_Check(value)) {
        return NULL;
    }
    const char *text = PyUnicode_AsUTF8AndSize(value, length);
    if (text == NULL) {
        PyErr_Clear();  /* a lone surrogate: RecordEncoder says what becomes of it */
        return NULL;
    }
    return unescaped(text, *length, 0xFF) ? text : NULL;
}

/* Writes a non-negative integer; returns the end. */
static char *put_integer(char *to, uint64_t value) {
    char digits[24];
    int count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (count > 0) {
        *to++ = digits[--count];
    }
    return to;
}

/* Writes `value` in `decimals` places (1 to 6), as `fixed` in `record.py` does: rounded to
   the nearest unit of the last place (half to even, as Python's round), trailing zeros
   dropped but one. `text` takes 32 bytes; 0 when the value is negative, not finite, or
   past 2^53 units (left to RecordEncoder). */
static Py_ssize_t fixed(double value, int decimals, char *text) {
    static const uint64_t scales[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    double units = rint(value * (double)scales[decimals]);
    if (!(units >= 0.0 && units < 9007199254740992.0)) {
        return 0;
    }
    uint64_t part = (uint64_t)units % scales[decimals];
    char *to = put_integer(text, (uint64_t)units / scales[decimals]);
    *to++ = '.';
    int places = decimals;
    while (places > 1 && part % 10 == 0) {
        part /= 10;
        places--;
    }
    for (char *digit = to + places; digit > to; part /= 10) {
        *--digit = (char)('0' + part % 10);
    }
    return to + places - text;
}

/* Where an entry's fields are: the queue's entries are all of one type, whose fields are
   slots (member descriptors), read straight from the object rather than looked up by name
   each time. `type` NULL: looked up by name. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t offsets[FIELD_COUNT];
} Layout;

/* Where `type`'s attribute `name` is in its instances when it is a slot holding an object
   (a member descriptor), to be read straight from them; -1 when it is anything else. */
static Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name) {
    PyObject *descriptor = PyObject_GetAttr((PyObject *)type, name);
    if (descriptor == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descriptor, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)descriptor)->d_member->type == T_OBJECT_EX) {
        offset = ((PyMemberDescrObject *)descriptor)->d_member->offset;
    }
    Py_DECREF(descriptor);
    return offset;
}

static void find_layout(Layout *layout, PyTypeObject *type) {
    layout->type = NULL;
    for (int i = 0; i < FIELD_COUNT; i++) {
        if ((layout->offsets[i] = slot_offset(type, field_names[i])) < 0) {
            return;
        }
    }
    layout->type = type;
}

/* `entry`'s field `field`, a new reference; NULL with an exception set when it has none. */
static PyObject *field_of(const Layout *layout, PyObject *entry, int field) {
    if (Py_TYPE(entry) != layout->type) {
        return PyObject_GetAttr(entry, field_names[field]);
    }
    PyObject *value = *(PyObject **)((char *)entry + layout->offsets[field]);
    if (value == NULL) {
        PyErr_SetObject(PyExc_AttributeError, field_names[field]);
        return NULL;
    }
    return Py_NewRef(value);
}

typedef struct {
    const Tree *tree;  /* NULL: identifiers kept */
    const HmacKey *hash_key;  /* NULL: identifiers dropped (with a tree) */
    long version;
    const char *error_reason;
    Py_ssize_t error_reason_length;
    Scan scan;         /* its edits' memory reused from entry to entry */
} Encoding;

/* A record's parts as its line is written from them: pointers into the ring (or into
   objects held while they are read). */
typedef struct {
    const char *part[PART_COUNT];
    Py_ssize_t length[PART_COUNT];
    int has_id, has_reason;
    double arrival, elapsed;
    int64_t status;
} Parts;

/* Whether a recorded string (an id, the model version, a reason) goes between JSON quotes
   as it is: well-formed UTF-8 with nothing JSON escapes. */
static int plain_text(const char *text, Py_ssize_t length) {
    return unescaped(text, length, 0xFF) && is_utf8((const unsigned char *)text, length);
}

/* Appends the record of `read` to `out`: 1, or 0 to leave the record to RecordEncoder, or
   -1 when memory ran out. Runs without the GIL: nothing here touches Python. */
static int write_record(Encoding *encoding, const Parts *read, Output *out) {
    char arrival[32], latency[32];
    Py_ssize_t arrival_length = fixed(read->arrival, 6, arrival);
    Py_ssize_t latency_length = fixed(read->elapsed * 1000, 3, latency);
    if (arrival_length == 0 || latency_length == 0 || !read->has_id || read->status < 0 ||
        read->status > 999) {
        return 0;
    }
    const char *body = read->part[PART_BODY];
    Py_ssize_t body_length = read->length[PART_BODY];
    if (body_length == 0 || !is_utf8((const unsigned char *)body, body_length) ||
        !plain_text(read->part[PART_ID], read->length[PART_ID]) ||
        !plain_text(read->part[PART_MODEL_VERSION], read->length[PART_MODEL_VERSION]) ||
        (read->has_reason && !plain_text(read->part[PART_REASON], read->length[PART_REASON]))) {
        return 0;
    }
    Scan *scan = &encoding->scan;
    Py_ssize_t body_size = body_length;
    if (encoding->tree != NULL) {
        int scanned = scan_body(scan, body, body_length, encoding->tree,
                                encoding->hash_key != NULL);
        if (scanned <= 0) {
            return scanned;
        }
        if (encoding->hash_key != NULL && !hashes_plain_strings(scan)) {
            return 0;
        }
        body_size = edited_size(scan);
    }
    const char *outcome_text;
    if (read->status >= 400) {
        outcome_text = "\"invalid\"";
    } else if (!read->has_reason) {
        outcome_text = "\"bid\"";
    } else if (read->length[PART_REASON] == encoding->error_reason_length &&
               memcmp(read->part[PART_REASON], encoding->error_reason,
                      (size_t)encoding->error_reason_length) == 0) {
        outcome_text = "\"error\"";
    } else {
        outcome_text = "\"no_bid\"";
    }
    /* Every fixed part of the line, the numbers and the outcome take less than 256 bytes. */
    Py_ssize_t more = 256 + body_size;
    for (int i = 0; i < PART_COUNT; i++) {
        if (i != PART_BODY) {
            more += read->length[i];
        }
    }
    if (grow(out, more) < 0) {
        return -1;
    }
    char *to = out->data + out->size;
    to = PUT_LITERAL(to, "{\"v\":");
    to = put_integer(to, (uint64_t)encoding->version);
    to = PUT_LITERAL(to, ",\"id\":\"");
    to = put(to, read->part[PART_ID], read->length[PART_ID]);
    to = PUT_LITERAL(to, "\",\"ts\":");
    to = put(to, arrival, arrival_length);
    to = PUT_LITERAL(to, ",\"headers\":");
    to = put(to, read->part[PART_HEADERS], read->length[PART_HEADERS]);
    to = PUT_LITERAL(to, ",\"body\":");
    if (encoding->tree != NULL) {
        to = write_edited(to, scan, encoding->hash_key);
    } else {
        to = copy_on_one_line(to, body, body_length);
    }
    to = PUT_LITERAL(to, ",\"status\":");
    to = put_integer(to, (uint64_t)read->status);
    to = PUT_LITERAL(to, ",\"latency_ms\":");
    to = put(to, latency, latency_length);
    to = PUT_LITERAL(to, ",\"model_version\":\"");
    to = put(to, read->part[PART_MODEL_VERSION], read->length[PART_MODEL_VERSION]);
    to = PUT_LITERAL(to, "\",\"decision\":{\"outcome\":");
    to = put(to, outcome_text, (Py_ssize_t)strlen(outcome_text));
    to = PUT_LITERAL(to, ",\"reason\":");
    if (read->has_reason) {
        *to++ = '"';
        to = put(to, read->part[PART_REASON], read->length[PART_REASON]);
        *to++ = '"';
    } else {
        to = PUT_LITERAL(to, "null");
    }
    to = PUT_LITERAL(to, ",\"imps\":");
    to = put(to, read->part[PART_IMPS], read->length[PART_IMPS]);
    to = PUT_LITERAL(to, "}}\n");
    out->size = to - out->data;
    return 1;
}

/* ---- The ring -------------------------------------------------------------------------

   RecordRing(capacity_bytes, max_records)

   The hand-off queue's storage: records laid out in one block of memory, written by the
   event loop (holding the GIL) and read by the writer's thread (without it), one writer
   and one reader at a time, synchronised by two counters. Nothing the bid path held
   outlives its request: the record is copied in, and the request's objects are freed at
   once, where they were made, rather than kept until the writer's next pass and freed
   there (keeping them cost the bid path a few percent of its throughput, measured).

   A record is a RecordHead then its parts' bytes, padded to 8 bytes; one that does not
   fit before the end of the block starts at its beginning, after a head of size 0 (or
   fewer bytes than a head) marks the rest as skipped. `head` and `tail` count bytes ever
   written and ever read: the block holds what is between them. */

typedef struct {
    uint32_t size;  /* of the whole record, a multiple of 8; 0 marks a skip to the start */
    uint32_t flags;
    double arrival;
    double elapsed;
    int64_t status;
    uint32_t length[PART_COUNT];
} RecordHead;

enum { HAS_ID = 1, HAS_REASON = 2 };

typedef struct {
    PyObject_HEAD
    char *data;
    int64_t capacity;
    int64_t max_records;
    _Atomic int64_t head;         /* written by the producer */
    _Atomic int64_t tail;         /* written by the consumer */
    _Atomic int64_t records_in;   /* written by the producer */
    _Atomic int64_t records_out;  /* written by the consumer */
    long long dropped;            /* records refused: counted by the producers */
    PyThread_type_lock consumer;  /* one consumer at a time */
    PyObject *wake;               /* called when a record fills half the ring */
} Ring;

static PyTypeObject RingType;

static int64_t padded(int64_t size) {
    return (size + 7) & ~(int64_t)7;
}

/* Where a record of `size` bytes (padded) goes, or NULL when the ring has no room for it;
   `*next` is then where the producer's count goes once it is written. Producer only. */
static char *ring_reserve(Ring *ring, int64_t size, int64_t *next) {
    int64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    int64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    int64_t records = atomic_load_explicit(&ring->records_in, memory_order_relaxed) -
                      atomic_load_explicit(&ring->records_out, memory_order_acquire);
    int64_t offset = head % ring->capacity;
    int64_t skip = ring->capacity - offset < size ? ring->capacity - offset : 0;
    if (records >= ring->max_records || head + skip + size - tail > ring->capacity) {
        return NULL;
    }
    if (skip >= (int64_t)sizeof(RecordHead)) {
        ((RecordHead *)(ring->data + offset))->size = 0;
    }
    *next = head + skip + size;
    return ring->data + (head + skip) % ring->capacity;
}

/* Makes the record reserved up to `next` visible to the consumer. */
static void ring_publish(Ring *ring, int64_t next) {
    atomic_store_explicit(&ring->head, next, memory_order_release);
    atomic_store_explicit(&ring->records_in,
                          atomic_load_explicit(&ring->records_in, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* Whether the ring just reached half its bytes or records (the writer is woken then). */
static int ring_reached_half(Ring *ring, int64_t before_bytes, int64_t before_records) {
    int64_t bytes = atomic_load_explicit(&ring->head, memory_order_relaxed) -
                    atomic_load_explicit(&ring->tail, memory_order_acquire);
    int64_t records = atomic_load_explicit(&ring->records_in, memory_order_relaxed) -
                      atomic_load_explicit(&ring->records_out, memory_order_acquire);
    int64_t half_records = ring->max_records > 1 ? ring->max_records / 2 : 1;
    return (before_bytes < ring->capacity / 2 && bytes >= ring->capacity / 2) ||
           (before_records < half_records && records >= half_records);
}

/* Writes a record of `parts` at `to`, `size` bytes reserved for it. */
static void ring_write(char *to, int64_t size, const Parts *parts) {
    RecordHead head = {(uint32_t)size,
                       (uint32_t)((parts->has_id ? HAS_ID : 0) | (parts->has_reason ? HAS_REASON : 0)),
                       parts->arrival, parts->elapsed, parts->status, {0}};
    char *at = to + sizeof head;
    for (int i = 0; i < PART_COUNT; i++) {
        head.length[i] = (uint32_t)parts->length[i];
        at = put(at, parts->part[i], parts->length[i]);
    }
    memcpy(to, &head, sizeof head);
}

/* The bytes a record of `parts` takes in the ring; -1 when a part is too long for it. */
static int64_t record_size(const Parts *parts) {
    int64_t size = (int64_t)sizeof(RecordHead);
    for (int i = 0; i < PART_COUNT; i++) {
        if (parts->length[i] > (Py_ssize_t)UINT32_MAX) {
            return -1;
        }
        size += parts->length[i];
    }
    return padded(size);
}

/* Puts a record of `parts`: 1, or 0 when the ring has no room (counted as dropped), or -1
   when the record filled half of it and `wake()` raised. Producer, GIL held. */
static int ring_put(Ring *ring, const Parts *parts) {
    int64_t size = record_size(parts), next;
    char *to = size < 0 || size > UINT32_MAX ? NULL : ring_reserve(ring, size, &next);
    if (to == NULL) {
        ring->dropped++;
        return 0;
    }
    int64_t before_bytes = atomic_load_explicit(&ring->head, memory_order_relaxed) -
                           atomic_load_explicit(&ring->tail, memory_order_acquire);
    int64_t before_records = atomic_load_explicit(&ring->records_in, memory_order_relaxed) -
                             atomic_load_explicit(&ring->records_out, memory_order_acquire);
    ring_write(to, size, parts);
    ring_publish(ring, next);
    if (ring_reached_half(ring, before_bytes, before_records)) {
        PyObject *woken = PyObject_CallNoArgs(ring->wake);
        if (woken == NULL) {
            return -1;
        }
        Py_DECREF(woken);
    }
    return 1;
}

/* The oldest record's head, or NULL when the ring is empty; skips a skip. Consumer only. */
static const RecordHead *ring_oldest(Ring *ring) {
    int64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    int64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    if (tail == head) {
        return NULL;
    }
    int64_t offset = tail % ring->capacity;
    if (ring->capacity - offset < (int64_t)sizeof(RecordHead) ||
        ((const RecordHead *)(ring->data + offset))->size == 0) {
        tail += ring->capacity - offset;
        atomic_store_explicit(&ring->tail, tail, memory_order_release);
        if (tail == head) {
            return NULL;
        }
        offset = 0;
    }
    return (const RecordHead *)(ring->data + offset);
}

/* Frees the oldest record's bytes for the producer. Consumer only. */
static void ring_release(Ring *ring, const RecordHead *record) {
    atomic_store_explicit(&ring->tail,
                          atomic_load_explicit(&ring->tail, memory_order_relaxed) + record->size,
                          memory_order_release);
    atomic_store_explicit(&ring->records_out,
                          atomic_load_explicit(&ring->records_out, memory_order_relaxed) + 1,
                          memory_order_release);
}

static void parts_of_record(const RecordHead *record, Parts *parts) {
    const char *at = (const char *)record + sizeof *record;
    for (int i = 0; i < PART_COUNT; i++) {
        parts->part[i] = at;
        parts->length[i] = record->length[i];
        at += record->length[i];
    }
    parts->has_id = (record->flags & HAS_ID) != 0;
    parts->has_reason = (record->flags & HAS_REASON) != 0;
    parts->arrival = record->arrival;
    parts->elapsed = record->elapsed;
    parts->status = record->status;
}

static PyObject *ring_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"capacity_bytes", "max_records", "wake", NULL};
    long long capacity, max_records;
    PyObject *wake;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLO:RecordRing", keywords, &capacity,
                                     &max_records, &wake)) {
        return NULL;
    }
    if (!PyCallable_Check(wake)) {
        PyErr_SetString(PyExc_TypeError, "wake must be callable");
        return NULL;
    }
    if (capacity < 4096 || capacity > ((long long)1 << 40) || max_records < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "capacity_bytes must be 4096 to 2**40 and max_records 1 or more");
        return NULL;
    }
    Ring *ring = (Ring *)type->tp_alloc(type, 0);
    if (ring == NULL) {
        return NULL;
    }
    ring->wake = Py_NewRef(wake);
    ring->capacity = capacity & ~(long long)7;
    ring->max_records = max_records;
    /* Pages are backed as the ring first goes through them, not here. */
    ring->data = PyMem_RawMalloc((size_t)ring->capacity);
    ring->consumer = PyThread_allocate_lock();
    if (ring->data == NULL || ring->consumer == NULL) {
        Py_DECREF(ring);
        return PyErr_NoMemory();
    }
    return (PyObject *)ring;
}

static int ring_traverse(Ring *ring, visitproc visit, void *arg) {
    Py_VISIT(ring->wake);
    return 0;
}

static int ring_clear(Ring *ring) {
    Py_CLEAR(ring->wake);
    return 0;
}

static void ring_dealloc(Ring *ring) {
    PyObject_GC_UnTrack(ring);
    ring_clear(ring);
    PyMem_RawFree(ring->data);
    if (ring->consumer != NULL) {
        PyThread_free_lock(ring->consumer);
    }
    Py_TYPE(ring)->tp_free((PyObject *)ring);
}

static Py_ssize_t ring_length(Ring *ring) {
    return (Py_ssize_t)(atomic_load_explicit(&ring->records_in, memory_order_acquire) -
                        atomic_load_explicit(&ring->records_out, memory_order_acquire));
}

/* Takes the consumer's lock with the GIL let go (the other consumer may hold it while it
   encodes, without the GIL). */
static void lock_consumer(Ring *ring) {
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(ring->consumer, WAIT_LOCK);
    Py_END_ALLOW_THREADS
}

/* encode(limit, room, tree, version, error_reason, hash_key=None) -> (bytes, int)

   Up to `limit` of the oldest records as lines, `record.py`'s `RecordEncoder.encode`'s,
   byte for byte, joined, and how many: it stops after the line that fills `room` bytes,
   or before a record it leaves to `RecordEncoder` (`pop` takes that one): one not decoded
   by the bid path, with an empty or non-UTF-8 body, a body the scanner does not handle, a
   string that JSON would escape, a negative, infinite or huge time, an identifier to hash
   written with an escape. `tree` None keeps the body's identifiers, a tree drops them, or
   with `hash_key` hashes them (HMAC-SHA256 under it, in hex). The whole pass runs with the
   GIL let go. */
static PyObject *ring_encode(Ring *ring, PyObject *args) {
    PyObject *tree;
    Py_ssize_t limit, room;
    Encoding encoding = {0};
    const char *secret = NULL;
    Py_ssize_t secret_length = 0;
    if (!PyArg_ParseTuple(args, "nnOly#|z#", &limit, &room, &tree, &encoding.version,
                          &encoding.error_reason, &encoding.error_reason_length, &secret,
                          &secret_length)) {
        return NULL;
    }
    if (tree != Py_None && !Py_IS_TYPE(tree, &TreeType)) {
        PyErr_SetString(PyExc_TypeError, "tree must be a ScannerTree or None");
        return NULL;
    }
    if (secret != NULL && tree == Py_None) {
        PyErr_SetString(PyExc_ValueError, "a hash key needs the tree of the identifiers");
        return NULL;
    }
    encoding.tree = tree == Py_None ? NULL : (const Tree *)tree;
    HmacKey hash_key;
    if (secret != NULL) {
        hmac_key(&hash_key, (const unsigned char *)secret, secret_length, sha256_compress);
        encoding.hash_key = &hash_key;
    }
    Output out = {NULL, 0, 0};
    /* A pass's lines are mostly a few hundred kilobytes: no growing by small steps. */
    if (reserve(&out, 64 * 1024) < 0) {
        return NULL;
    }
    Py_ssize_t count = 0;
    int outcome = 1;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(ring->consumer, WAIT_LOCK);
    const RecordHead *record;
    while (count < limit && out.size < room && (record = ring_oldest(ring)) != NULL) {
        Parts parts;
        parts_of_record(record, &parts);
        if ((outcome = write_record(&encoding, &parts, &out)) <= 0) {
            break;
        }
        ring_release(ring, record);
        count++;
    }
    PyThread_release_lock(ring->consumer);
    Py_END_ALLOW_THREADS
    PyObject *answer = outcome < 0 ? PyErr_NoMemory()
                                   : Py_BuildValue("(y#n)", out.data, out.size, count);
    PyMem_RawFree(encoding.scan.edits);
    PyMem_RawFree(out.data);
    return answer;
}

static PyObject *text_or_none(const Parts *parts, int part, int present) {
    if (!present) {
        Py_RETURN_NONE;
    }
    return PyUnicode_DecodeUTF8(parts->part[part], parts->length[part], "surrogatepass");
}

/* pop(entry_type) -> Entry | None

   The oldest record as an `entry_type` (`record.py`'s `Entry`), taken out of the ring;
   None when it is empty. */
static PyObject *ring_pop(Ring *ring, PyObject *entry_type) {
    lock_consumer(ring);
    PyObject *entry = NULL;
    const RecordHead *record = ring_oldest(ring);
    if (record == NULL) {
        entry = Py_NewRef(Py_None);
        goto done;
    }
    Parts parts;
    parts_of_record(record, &parts);
    /* Entry's fields in their order (`record.py`). */
    PyObject *fields[9] = {
        text_or_none(&parts, PART_ID, parts.has_id),
        PyFloat_FromDouble(parts.arrival),
        PyBytes_FromStringAndSize(parts.part[PART_HEADERS], parts.length[PART_HEADERS]),
        PyBytes_FromStringAndSize(parts.part[PART_BODY], parts.length[PART_BODY]),
        PyLong_FromLongLong(parts.status),
        PyFloat_FromDouble(parts.elapsed),
        text_or_none(&parts, PART_MODEL_VERSION, 1),
        text_or_none(&parts, PART_REASON, parts.has_reason),
        PyBytes_FromStringAndSize(parts.part[PART_IMPS], parts.length[PART_IMPS]),
    };
    int complete = 1;
    for (int i = 0; i < 9; i++) {
        complete &= fields[i] != NULL;
    }
    if (complete) {
        entry = PyObject_Vectorcall(entry_type, fields, 9, NULL);
    }
    for (int i = 0; i < 9; i++) {
        Py_XDECREF(fields[i]);
    }
    /* Taken out even when it could not be made: a record that fails once fails again. */
    ring_release(ring, record);
done:
    PyThread_release_lock(ring->consumer);
    return entry;
}

/* A string's UTF-8 (lone surrogates kept, as `pop` reads them back), for a record: 1, 0
   when `value` is not a string (TypeError set), -1 on another error. `*holder` keeps a
   converted copy alive. */
static int text_part(PyObject *value, Parts *parts, int part, PyObject **holder) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "expected a string, not %.100s", Py_TYPE(value)->tp_name);
        return 0;
    }
    parts->part[part] = PyUnicode_AsUTF8AndSize(value, &parts->length[part]);
    if (parts->part[part] != NULL) {
        return 1;
    }
    PyErr_Clear();
    *holder = PyUnicode_AsEncodedString(value, "utf-8", "surrogatepass");
    if (*holder == NULL) {
        return -1;
    }
    parts->part[part] = PyBytes_AS_STRING(*holder);
    parts->length[part] = PyBytes_GET_SIZE(*holder);
    return 1;
}

static int bytes_part(PyObject *value, Parts *parts, int part) {
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "expected bytes, not %.100s", Py_TYPE(value)->tp_name);
        return 0;
    }
    parts->part[part] = PyBytes_AS_STRING(value);
    parts->length[part] = PyBytes_GET_SIZE(value);
    return 1;
}

/* put(entry) -> bool

   Copies `entry` (an `Entry`, made in Python: the hand-off's slow path) into the ring;
   False when it has no room (counted in `dropped`). */
static PyObject *ring_put_entry(Ring *ring, PyObject *entry) {
    Layout layout;
    find_layout(&layout, Py_TYPE(entry));
    PyObject *fields[FIELD_COUNT] = {NULL};
    PyObject *holders[3] = {NULL, NULL, NULL};
    PyObject *answer = NULL;
    Parts parts = {0};
    for (int i = 0; i < FIELD_COUNT; i++) {
        if ((fields[i] = field_of(&layout, entry, i)) == NULL) {
            goto done;
        }
    }
    parts.has_id = fields[F_REQUEST_ID] != Py_None;
    parts.has_reason = fields[F_REASON] != Py_None;
    if ((parts.has_id && text_part(fields[F_REQUEST_ID], &parts, PART_ID, &holders[0]) <= 0) ||
        text_part(fields[F_MODEL_VERSION], &parts, PART_MODEL_VERSION, &holders[1]) <= 0 ||
        (parts.has_reason && text_part(fields[F_REASON], &parts, PART_REASON, &holders[2]) <= 0) ||
        !bytes_part(fields[F_HEADERS], &parts, PART_HEADERS) ||
        !bytes_part(fields[F_BODY], &parts, PART_BODY) ||
        !bytes_part(fields[F_IMPS], &parts, PART_IMPS)) {
        goto done;
    }
    parts.arrival = PyFloat_AsDouble(fields[F_ARRIVAL]);
    parts.elapsed = PyFloat_AsDouble(fields[F_ELAPSED]);
    parts.status = PyLong_AsLongLong(fields[F_STATUS]);
    if (PyErr_Occurred()) {
        goto done;
    }
    int put = ring_put(ring, &parts);
    answer = put < 0 ? NULL : PyBool_FromLong(put);
done:
    for (int i = 0; i < FIELD_COUNT; i++) {
        Py_XDECREF(fields[i]);
    }
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(holders[i]);
    }
    return answer;
}

static PyMethodDef ring_methods[] = {
    {"encode", (PyCFunction)ring_encode, METH_VARARGS,
     "encode(limit, room, tree, version, error_reason, hash_key=None) -> (bytes, int)"},
    {"pop", (PyCFunction)ring_pop, METH_O, "pop(entry_type) -> Entry | None"},
    {"put", (PyCFunction)ring_put_entry, METH_O, "put(entry) -> bool"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ring_members[] = {
    {"dropped", T_LONGLONG, offsetof(Ring, dropped), 0, "Records refused for want of room."},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods ring_as_sequence = {.sq_length = (lenfunc)ring_length};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bidder.recording._speedups.RecordRing",
    .tp_basicsize = sizeof(Ring),
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "RecordRing(capacity_bytes, max_records, wake): the hand-off queue's records.",
    .tp_traverse = (traverseproc)ring_traverse,
    .tp_clear = (inquiry)ring_clear,
    .tp_new = ring_new,
    .tp_methods = ring_methods,
    .tp_members = ring_members,
    .tp_as_sequence = &ring_as_sequence,
};

/* ---- The hand-off --------------------------------------------------------------------

   A capture's record, as `EntryMaker` makes its entry in Python, copied into the ring in
   one call: no Python frame on the bid path. The two parts it encodes are the request's
   recorded headers, a JSON object of the capture's headers (ASGI's list of (name, value)
   pairs) named in `names` (`gzip_names` for a body starting with gzip's magic number), in
   their order; and its decision's `imps`, a JSON array, one object per decision or, when
   there are none, per impression of the request with the request's reason, each number
   written by `encode_number` (msgspec's encoder, as the Python's): the same bytes as
   `EntryMaker`'s Python, in a fraction of its time.

   It leaves the capture to the Python: a recorded header twice or with a byte JSON would
   escape or that is not ASCII, a string JSON would escape or not encodable as UTF-8,
   anything not of the expected type. */

enum { A_IMP, A_ID, A_SCORE, A_PRICE, A_REASON, ATTRIBUTE_COUNT };
static PyObject *attribute_names[ATTRIBUTE_COUNT];
static const char *const attribute_texts[ATTRIBUTE_COUNT] = {"imp", "id", "score", "price", "reason"};

/* Where one call site's attribute is in its objects: they are mostly of one type, a
   msgspec struct whose fields are slots, and a slot is read straight from the object at its
   offset, where looking it up by name, the generic way, costs tens of nanoseconds (about a
   quarter of a microsecond a request over the attributes read here, measured in place).
   `type` is a strong reference, so that its address cannot be another type's later;
   `offset` is -1 for a type whose attribute is not a plain slot, read the generic way. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t offset;
} SlotCache;

static SlotCache request_id_slot, request_imp_slot, imp_id_slot, decision_slots[4];

/* `object`'s attribute `attribute` (an index into `attribute_names`): a new reference, or
   NULL with an exception set. */
static PyObject *slot_attribute(SlotCache *cache, PyObject *object, int attribute) {
    PyTypeObject *type = Py_TYPE(object);
    if (type != cache->type) {
        Py_XSETREF(cache->type, (PyTypeObject *)Py_NewRef(type));
        cache->offset = type->tp_getattro == PyObject_GenericGetAttr
                            ? slot_offset(type, attribute_names[attribute])
                            : -1;
    }
    if (cache->offset >= 0) {
        PyObject *value = *(PyObject **)((char *)object + cache->offset);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(object, attribute_names[attribute]);  /* raises, or the generic way */
}

/* The index of the bytes `text` in `candidates`, a tuple of bytes; -1 when it is not there. */
static Py_ssize_t index_of(PyObject *candidates, const char *text, Py_ssize_t length) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(candidates); i++) {
        PyObject *candidate = PyTuple_GET_ITEM(candidates, i);
        if (PyBytes_GET_SIZE(candidate) == length &&
            memcmp(PyBytes_AS_STRING(candidate), text, (size_t)length) == 0) {
            return i;
        }
    }
    return -1;
}

/* Whether a header's bytes go between JSON quotes as they are and read the same as latin-1
   (the recorded headers' decoding): printable ASCII other than a quote or a backslash. */
static int plain_ascii(const char *text, Py_ssize_t length) {
    return unescaped(text, length, 0x7E);
}

/* Appends `"text"`: 1, or -1 with an exception set. */
static int put_quoted(Output *out, const char *text, Py_ssize_t length) {
    if (reserve(out, length + 2) < 0) {
        return -1;
    }
    char *to = out->data + out->size;
    *to++ = '"';
    to = put(to, text, length);
    *to++ = '"';
    out->size = to - out->data;
    return 1;
}

static int put_text(Output *out, const char *text, Py_ssize_t length) {
    if (reserve(out, length) < 0) {
        return -1;
    }
    put(out->data + out->size, text, length);
    out->size += length;
    return 1;
}

#define PUT_TEXT(out, text) put_text((out), (text), (Py_ssize_t)sizeof(text) - 1)

/* Appends `value`, a string JSON writes as it is, or null for None. */
static int put_string_or_null(Output *out, PyObject *value) {
    if (value == Py_None) {
        return PUT_TEXT(out, "null");
    }
    Py_ssize_t length;
    const char *text = plain_string(value, &length);
    return text == NULL ? 0 : put_quoted(out, text, length);
}

/* Appends `value`, a float as `encode_number` writes it, or null for None. Python's own
   shortest form (`repr`) takes its exact, arbitrary-precision path for a model's scores (17
   digits): about 1.3 us a request on the bid path, where msgspec's encoder takes 0.06. */
static int put_number_or_null(Output *out, PyObject *value, PyObject *encode_number) {
    if (value == Py_None) {
        return PUT_TEXT(out, "null");
    }
    if (!PyFloat_Check(value)) {
        return 0;
    }
    PyObject *text = PyObject_CallOneArg(encode_number, value);
    if (text == NULL) {
        return -1;
    }
    int outcome = PyBytes_Check(text) ? put_text(out, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text)) : 0;
    Py_DECREF(text);
    return outcome;
}

/* The recorded headers; see above. */
static int put_headers(Output *out, PyObject *headers, PyObject *names) {
    if (!PyList_CheckExact(headers) || PyTuple_GET_SIZE(names) > 32) {
        return 0;
    }
    uint32_t seen = 0;
    int outcome = PUT_TEXT(out, "{");
    for (Py_ssize_t i = 0; outcome > 0 && i < PyList_GET_SIZE(headers); i++) {
        PyObject *header = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(header) || PyTuple_GET_SIZE(header) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(header, 0)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(header, 1))) {
            return 0;
        }
        PyObject *name = PyTuple_GET_ITEM(header, 0);
        Py_ssize_t index = index_of(names, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
        if (index < 0) {
            continue;
        }
        PyObject *value = PyTuple_GET_ITEM(header, 1);
        if ((seen & (1u << index)) ||
            !plain_ascii(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) ||
            !plain_ascii(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))) {
            return 0;
        }
        if (seen && (outcome = PUT_TEXT(out, ",")) <= 0) {
            break;
        }
        seen |= 1u << index;
        if ((outcome = put_quoted(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))) > 0 &&
            (outcome = PUT_TEXT(out, ":")) > 0) {
            outcome = put_quoted(out, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
        }
    }
    return outcome > 0 ? PUT_TEXT(out, "}") : outcome;
}

/* One impression's object: `imp`'s id, then bid, price, score and reason. */
static int put_imp(Output *out, PyObject *imp, int bid, PyObject *price, PyObject *score,
                   PyObject *reason, PyObject *encode_number) {
    PyObject *id = slot_attribute(&imp_id_slot, imp, A_ID);
    if (id == NULL) {
        return -1;
    }
    int outcome = PUT_TEXT(out, "{\"id\":");
    if (outcome > 0) {
        outcome = id == Py_None ? PUT_TEXT(out, "\"\"") : put_string_or_null(out, id);
    }
    Py_DECREF(id);
    if (outcome > 0) {
        outcome = bid ? PUT_TEXT(out, ",\"bid\":true,\"price\":")
                      : PUT_TEXT(out, ",\"bid\":false,\"price\":");
    }
    if (outcome > 0 && (outcome = put_number_or_null(out, price, encode_number)) > 0 &&
        (outcome = PUT_TEXT(out, ",\"score\":")) > 0 &&
        (outcome = put_number_or_null(out, score, encode_number)) > 0 &&
        (outcome = PUT_TEXT(out, ",\"reason\":")) > 0 &&
        (outcome = put_string_or_null(out, reason)) > 0) {
        outcome = PUT_TEXT(out, "}");
    }
    return outcome;
}

/* A decision's object: a bid has a price and no reason, a no-bid a reason and no price. */
static int put_decision(Output *out, PyObject *decision, PyObject *encode_number) {
    PyObject *values[4] = {NULL};
    static const int attributes[4] = {A_IMP, A_SCORE, A_PRICE, A_REASON};
    int outcome = -1;
    for (int i = 0; i < 4; i++) {
        if ((values[i] = slot_attribute(&decision_slots[i], decision, attributes[i])) == NULL) {
            goto done;
        }
    }
    int bid = values[3] == Py_None;
    outcome = put_imp(out, values[0], bid, bid ? values[2] : Py_None, values[1], values[3],
                      encode_number);
done:
    for (int i = 0; i < 4; i++) {
        Py_XDECREF(values[i]);
    }
    return outcome;
}

/* The decision's impressions; see above. */
static int put_imps(Output *out, PyObject *request, PyObject *reason, PyObject *decisions,
                    PyObject *encode_number) {
    PyObject *items;
    if (decisions != Py_None) {
        items = Py_NewRef(decisions);
    } else if (request == Py_None) {
        return PUT_TEXT(out, "[]");
    } else if ((items = slot_attribute(&request_imp_slot, request, A_IMP)) == NULL) {
        return -1;
    }
    int outcome = 0;
    if (items == Py_None) {
        outcome = PUT_TEXT(out, "[]");
    } else if (PyList_CheckExact(items)) {
        outcome = PUT_TEXT(out, "[");
        for (Py_ssize_t i = 0; outcome > 0 && i < PyList_GET_SIZE(items); i++) {
            if (i > 0 && (outcome = PUT_TEXT(out, ",")) <= 0) {
                break;
            }
            PyObject *item = PyList_GET_ITEM(items, i);
            outcome = decisions != Py_None
                          ? put_decision(out, item, encode_number)
                          : put_imp(out, item, 0, Py_None, Py_None, reason, encode_number);
        }
        if (outcome > 0) {
            outcome = PUT_TEXT(out, "]");
        }
    }
    Py_DECREF(items);
    return outcome;
}

/* The scratch memory of the recorded headers and the impressions, used again by each
   hand-off (the GIL serialises them; `busy` guards against one re-entered from Python). */
static Output scratch_headers, scratch_imps;
static int scratch_busy;

/* A capture's parts (see `Capture` in `record.py`): 1, 0 to leave the capture to the
   Python, -1 on an error. Pointers in `parts` are into the capture's objects and the
   scratch memory; `*request_id` is a new reference the caller releases. */
static int capture_parts(PyObject *capture, PyObject *names, PyObject *gzip_names,
                         PyObject *encode_number, Parts *parts, PyObject **request_id) {
    if (!PyTuple_CheckExact(capture) || PyTuple_GET_SIZE(capture) != 6) {
        return 0;
    }
    PyObject *verdict = PyTuple_GET_ITEM(capture, 5), *body = PyTuple_GET_ITEM(capture, 2);
    PyObject *arrival = PyTuple_GET_ITEM(capture, 0), *elapsed = PyTuple_GET_ITEM(capture, 3);
    PyObject *version = PyTuple_GET_ITEM(capture, 4);
    if (!PyTuple_CheckExact(verdict) || PyTuple_GET_SIZE(verdict) != 4 ||
        !PyBytes_CheckExact(body) || !PyFloat_CheckExact(arrival) ||
        !PyFloat_CheckExact(elapsed) || !PyLong_CheckExact(PyTuple_GET_ITEM(verdict, 0))) {
        return 0;
    }
    PyObject *request = PyTuple_GET_ITEM(verdict, 1), *reason = PyTuple_GET_ITEM(verdict, 2);
    int gzipped = PyBytes_GET_SIZE(body) >= 2 && memcmp(PyBytes_AS_STRING(body), "\x1f\x8b", 2) == 0;
    PyObject *recorded = gzipped ? gzip_names : names;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(recorded); i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(recorded, i))) {
            PyErr_SetString(PyExc_TypeError, "header names must be bytes");
            return -1;
        }
    }
    scratch_headers.size = scratch_imps.size = 0;
    int outcome = put_headers(&scratch_headers, PyTuple_GET_ITEM(capture, 1), recorded);
    if (outcome > 0) {
        outcome = put_imps(&scratch_imps, request, reason, PyTuple_GET_ITEM(verdict, 3),
                           encode_number);
    }
    if (outcome <= 0) {
        return outcome;
    }
    *request_id = request == Py_None ? Py_NewRef(Py_None)
                                     : slot_attribute(&request_id_slot, request, A_ID);
    if (*request_id == NULL) {
        return -1;
    }
    parts->has_id = *request_id != Py_None;
    parts->has_reason = reason != Py_None;
    const char *texts[3] = {NULL, NULL, NULL};
    PyObject *strings[3] = {*request_id, version, reason};
    static const int text_parts[3] = {PART_ID, PART_MODEL_VERSION, PART_REASON};
    for (int i = 0; i < 3; i++) {
        if (strings[i] == Py_None && i != 1) {
            parts->part[text_parts[i]] = "";
            parts->length[text_parts[i]] = 0;
            continue;
        }
        if (!PyUnicode_Check(strings[i]) ||
            (texts[i] = PyUnicode_AsUTF8AndSize(strings[i], &parts->length[text_parts[i]])) == NULL) {
            PyErr_Clear();  /* not a string, or a lone surrogate: the Python's */
            return 0;
        }
        parts->part[text_parts[i]] = texts[i];
    }
    parts->part[PART_HEADERS] = scratch_headers.data;
    parts->length[PART_HEADERS] = scratch_headers.size;
    parts->part[PART_IMPS] = scratch_imps.data;
    parts->length[PART_IMPS] = scratch_imps.size;
    parts->part[PART_BODY] = PyBytes_AS_STRING(body);
    parts->length[PART_BODY] = PyBytes_GET_SIZE(body);
    parts->arrival = PyFloat_AS_DOUBLE(arrival);
    parts->elapsed = PyFloat_AS_DOUBLE(elapsed);
    int overflow = 0;
    parts->status = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(verdict, 0), &overflow);
    return overflow ? 0 : 1;
}

/* A fast-call function's TypeError for arguments it does not take. */
static PyObject *usage(const char *signature) {
    PyErr_SetString(PyExc_TypeError, signature);
    return NULL;
}

/* enqueue(ring, slow_put, names, gzip_names, encode_number, capture) -> None

   The bid path's hand-off (`writer.py`'s `CaptureQueue`, which binds every argument but
   the capture) with no Python frame at all: the capture's record is copied into `ring`
   (a RecordRing, which wakes the writer when that fills half of it); with no room, it is
   counted in the ring's `dropped`. Everything else goes to `slow_put(capture)`, the
   hand-off in Python, which makes the entry, counts, logs and falls back: a capture left
   to the Python, and an error (cleared here, as the Python meets it again and logs it). */
static PyObject *enqueue(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6 || !Py_IS_TYPE(args[0], &RingType) || !PyTuple_Check(args[2]) ||
        !PyTuple_Check(args[3])) {
        return usage("enqueue(ring: RecordRing, slow_put, names: tuple, gzip_names: tuple, "
                     "encode_number, capture)");
    }
    PyObject *capture = args[5];
    if (scratch_busy) {
        return PyObject_CallOneArg(args[1], capture);
    }
    scratch_busy = 1;
    Parts parts;
    PyObject *request_id = NULL;
    int outcome = capture_parts(capture, args[2], args[3], args[4], &parts, &request_id);
    if (outcome > 0 && ring_put((Ring *)args[0], &parts) < 0) {
        PyErr_Clear();  /* the record is in; the writer wakes on its timer all the same */
    }
    Py_XDECREF(request_id);
    scratch_busy = 0;
    if (outcome > 0) {
        Py_RETURN_NONE;
    }
    PyErr_Clear();
    return PyObject_CallOneArg(args[1], capture);
}

static PyMethodDef methods[] = {
    {"scanner_tree", scanner_tree, METH_O, "scanner_tree(nodes) -> ScannerTree"},
    {"identifier_edits", identifier_edits, METH_VARARGS,
     "identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None"},
    {"without_identifiers", without_identifiers, METH_VARARGS,
     "without_identifiers(body, tree, portable=False) -> bytes | None"},
    {"hmac_sha256", hmac_sha256_digest, METH_VARARGS,
     "hmac_sha256(key, message, portable=False) -> bytes"},
    {"enqueue", (PyCFunction)(void (*)(void))enqueue, METH_FASTCALL,
     "enqueue(ring, slow_put, names, gzip_names, encode_number, capture) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_speedups",
    .m_doc = "The recorder's compiled parts: finding identifiers, encoding records.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    fill_tables();
#if defined(__SSE2__)
    skip_blocks = fastest_skip_blocks();
#endif
    sha256_compress = fastest_compress();
    for (int i = 0; i < FIELD_COUNT; i++) {
        if (field_names[i] == NULL && (field_names[i] = PyUnicode_InternFromString(field_texts[i])) == NULL) {
            return NULL;
        }
    }
    for (int i = 0; i < ATTRIBUTE_COUNT; i++) {
        if (attribute_names[i] == NULL &&
            (attribute_names[i] = PyUnicode_InternFromString(attribute_texts[i])) == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&TreeType) < 0 || PyType_Ready(&RingType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created != NULL && PyModule_AddObjectRef(created, "RecordRing", (PyObject *)&RingType) < 0) {
        Py_CLEAR(created);
    }
    return created;
}
