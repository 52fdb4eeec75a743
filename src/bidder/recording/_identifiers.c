/* Where a JSON request body's identifiers are, for `redaction.py`, in one pass over its bytes.

   identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None

   `body` is a JSON text already known to be valid (the bid path decoded it). `tree` is the
   identifier paths compiled by `redaction.py`: a tuple of nodes, node 0 the top-level
   object, each node a tuple (keys, targets, each): `keys` a tuple of bytes, `targets` a
   tuple of ints of the same length, `each` an int; a target is a node's index, IDENTIFIER
   (-2) or NOTHING (-1), and `each` is what every member of an object not named in `keys`,
   and every element of an array, leads to.

   The answer lists edits in the order of the body, none overlapping: (start, end, kind),
   kind one of the EDIT_* values below. Removing a member takes a comma with it, the one
   before it when a member was kept before it in its object, else the one after, so that the
   edited text is still JSON whichever members go. A `null` identifier is left as it is;
   with `hashing`, a string or number is hashed in place, anything else removed.

   None means "not here": the body is not a JSON object, a key on the way to an identifier
   is written with escapes (comparing it would need decoding), it nests deeper than
   MAX_DEPTH, or the text is not what the scanner expects. `redaction.py` then redacts it
   by decoding, as it does every body without this module.

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
    const char *text;
    Py_ssize_t size;
    Py_ssize_t at;
    PyObject *tree;
    PyObject *edits;
    int hashing;
    int unsupported;  /* set once the body cannot be handled here: the caller falls back */
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

/* At a '"': moves past the closing quote; `escaped` tells whether a backslash was seen.
   The quote is found with memchr, which reads many bytes a step; a string with escapes
   (rare) is stepped through from its first backslash. */
static int scan_string(Scan *scan, int *escaped) {
    *escaped = 0;
    scan->at++;
    while (scan->at < scan->size) {
        const char *from = scan->text + scan->at;
        size_t left = (size_t)(scan->size - scan->at);
        const char *quote = memchr(from, '"', left);
        if (quote == NULL) {
            break;
        }
        const char *backslash = memchr(from, '\\', (size_t)(quote - from));
        if (backslash == NULL) {
            scan->at = quote - scan->text + 1;
            return 0;
        }
        *escaped = 1;
        /* Past the escaped character, which cannot end the string. */
        scan->at = backslash - scan->text + 2;
    }
    return fail(scan);
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
    PyObject *edit = Py_BuildValue("(nni)", start, end, kind);
    if (edit == NULL) {
        return -1;
    }
    int failed = PyList_Append(scan->edits, edit);
    Py_DECREF(edit);
    return failed;
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

static int scan_value(Scan *scan, int node, int depth) {
    if (depth > MAX_DEPTH) {
        return fail(scan);
    }
    skip_space(scan);
    if (scan->at >= scan->size) {
        return fail(scan);
    }
    char c = scan->text[scan->at];
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

static PyObject *identifier_edits(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *tree;
    int hashing;
    if (!PyArg_ParseTuple(args, "y*O!p", &body, &PyTuple_Type, &tree, &hashing)) {
        return NULL;
    }
    Scan scan = {body.buf, body.len, 0, tree, PyList_New(0), hashing, 0};
    PyObject *answer = NULL;
    if (scan.edits == NULL) {
        goto done;
    }
    skip_space(&scan);
    if (scan.at >= scan.size || scan.text[scan.at] != '{' || PyTuple_GET_SIZE(tree) == 0) {
        scan.unsupported = 1;
    } else if (scan_value(&scan, 0, 0) == 0) {
        skip_space(&scan);
        if (scan.at != scan.size) {
            scan.unsupported = 1;
        }
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    if (scan.unsupported) {
        answer = Py_NewRef(Py_None);
    } else {
        answer = Py_NewRef(scan.edits);
    }
done:
    Py_XDECREF(scan.edits);
    PyBuffer_Release(&body);
    return answer;
}

static PyMethodDef methods[] = {
    {"identifier_edits", identifier_edits, METH_VARARGS,
     "identifier_edits(body, tree, hashing) -> list[tuple[int, int, int]] | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_identifiers",
    .m_doc = "Where a JSON body's identifiers are.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__identifiers(void) { return PyModule_Create(&module); }
