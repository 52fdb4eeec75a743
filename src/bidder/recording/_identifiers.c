/* Where a JSON request body's identifiers are, for `redaction.py`, in one pass over its bytes.

   without_identifiers(body, tree) -> bytes | None
       `body` with every identifier that is not null removed, on one line (line breaks
       between tokens become spaces): the `drop` mode, done here whole.
   identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None
       The edits that remove or hash them, for Python to apply (the `hash` mode: the
       keyed hash is Python's).

   `body` is a JSON text already known to be valid (the bid path decoded it). `tree` is the
   identifier paths compiled by `redaction.py`: a tuple of nodes, node 0 the top-level
   object, each node a tuple (keys, targets, each): `keys` a tuple of bytes, `targets` a
   tuple of ints of the same length, `each` an int; a target is a node's index, IDENTIFIER
   (-2) or NOTHING (-1), and `each` is what every member of an object not named in `keys`,
   and every element of an array, leads to.

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

typedef struct {
    const char *text;
    Py_ssize_t size;
    Py_ssize_t at;
    PyObject *tree;
    int hashing;
    int unsupported;  /* set once the body cannot be handled here: the caller falls back */
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
   container's end is found by (those and brackets), looked up a byte at a time: a body's
   strings are mostly short keys, where a memchr call per string costs as much. */
static unsigned char ends_text[256];
static unsigned char structural[256];

static void fill_tables(void) {
    ends_text['"'] = ends_text['\\'] = 1;
    structural['"'] = structural['{'] = structural['}'] = 1;
    structural['['] = structural[']'] = 1;
}

/* At a '"': moves past the closing quote; `escaped` tells whether a backslash was seen. */
static int scan_string(Scan *scan, int *escaped) {
    const unsigned char *text = (const unsigned char *)scan->text;
    *escaped = 0;
    Py_ssize_t at = scan->at + 1;
    for (;;) {
        while (at < scan->size && !ends_text[text[at]]) {
            at++;
        }
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

static int add_edit(Scan *scan, Py_ssize_t start, Py_ssize_t end, int kind) {
    if (scan->edit_count == scan->edit_room) {
        Py_ssize_t room = scan->edit_room ? scan->edit_room * 2 : 16;
        Edit *grown = PyMem_Realloc(scan->edits, (size_t)room * sizeof(Edit));
        if (grown == NULL) {
            PyErr_NoMemory();
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

/* The target of `key` in `node`: a node, IDENTIFIER, or NOTHING. */
static int target_of(Scan *scan, int node, const char *key, Py_ssize_t length) {
    PyObject *entry = PyTuple_GET_ITEM(scan->tree, node);
    PyObject *keys = PyTuple_GET_ITEM(entry, 0);
    PyObject *targets = PyTuple_GET_ITEM(entry, 1);
    Py_ssize_t count = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *candidate = PyTuple_GET_ITEM(keys, i);
        if (PyBytes_GET_SIZE(candidate) == length &&
            memcmp(PyBytes_AS_STRING(candidate), key, (size_t)length) == 0) {
            return (int)PyLong_AsLong(PyTuple_GET_ITEM(targets, i));
        }
    }
    return (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
}

static int each_of(Scan *scan, int node) {
    if (node < 0) {
        return NOTHING;
    }
    return (int)PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(scan->tree, node), 2));
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
            if (PyErr_Occurred()) {
                return -1;
            }
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

/* An object or array off every path: only its end is wanted, so only strings and brackets
   are looked at (the body is known to be valid JSON), and without recursion. */
static int skip_container(Scan *scan) {
    const unsigned char *text = (const unsigned char *)scan->text;
    Py_ssize_t nesting = 0;
    while (scan->at < scan->size) {
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
    return fail(scan);
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

/* Scans `body`: 1 with its edits in `scan`, 0 when it is not handled here, -1 on an error
   (an exception set). The caller frees `scan->edits`. */
static int scan_body(Scan *scan, Py_buffer *body, PyObject *tree, int hashing) {
    *scan = (Scan){body->buf, body->len, 0, tree, hashing, 0, NULL, 0, 0};
    skip_space(scan);
    if (scan->at >= scan->size || scan->text[scan->at] != '{' || PyTuple_GET_SIZE(tree) == 0) {
        return 0;
    }
    if (scan_value(scan, 0, 0) == 0) {
        skip_space(scan);
        if (scan->at != scan->size) {
            scan->unsupported = 1;
        }
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    return scan->unsupported ? 0 : 1;
}

static PyObject *identifier_edits(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *tree;
    int hashing;
    if (!PyArg_ParseTuple(args, "y*O!p", &body, &PyTuple_Type, &tree, &hashing)) {
        return NULL;
    }
    Scan scan;
    int scanned = scan_body(&scan, &body, tree, hashing);
    PyObject *answer = NULL;
    if (scanned == 0) {
        answer = Py_NewRef(Py_None);
    } else if (scanned > 0 && (answer = PyList_New(scan.edit_count)) != NULL) {
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
    PyMem_Free(scan.edits);
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

static PyObject *without_identifiers(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *tree;
    if (!PyArg_ParseTuple(args, "y*O!", &body, &PyTuple_Type, &tree)) {
        return NULL;
    }
    Scan scan;
    int scanned = scan_body(&scan, &body, tree, 0);
    PyObject *answer = NULL;
    if (scanned == 0) {
        answer = Py_NewRef(Py_None);
    } else if (scanned > 0) {
        static const char null[] = "null";
        Py_ssize_t size = body.len;
        for (Py_ssize_t i = 0; i < scan.edit_count; i++) {
            size -= scan.edits[i].end - scan.edits[i].start;
            if (scan.edits[i].kind == EDIT_NULL) {
                size += 4;
            }
        }
        answer = PyBytes_FromStringAndSize(NULL, size);
        if (answer != NULL) {
            const char *text = body.buf;
            char *to = PyBytes_AS_STRING(answer);
            Py_ssize_t at = 0;
            for (Py_ssize_t i = 0; i < scan.edit_count; i++) {
                Edit edit = scan.edits[i];
                to = copy_on_one_line(to, text + at, edit.start - at);
                if (edit.kind == EDIT_NULL) {
                    to = copy_on_one_line(to, null, 4);
                }
                at = edit.end;
            }
            copy_on_one_line(to, text + at, body.len - at);
        }
    }
    PyMem_Free(scan.edits);
    PyBuffer_Release(&body);
    return answer;
}

static PyMethodDef methods[] = {
    {"identifier_edits", identifier_edits, METH_VARARGS,
     "identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None"},
    {"without_identifiers", without_identifiers, METH_VARARGS,
     "without_identifiers(body, tree) -> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_identifiers",
    .m_doc = "Where a JSON body's identifiers are.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__identifiers(void) {
    fill_tables();
    return PyModule_Create(&module);
}
