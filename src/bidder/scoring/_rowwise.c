/* The embedded model's compiled trees, called row by row from C.

   predict_rows(address, width, rows) -> list[float]

   `address` is the tl2cgen-generated `void predict(union Entry *row, int pred_margin,
   float *result)` (`compiled.py` takes it from the model's shared library through ctypes),
   `rows` a C-contiguous float32 array of `width` columns, `width` the library's own
   `get_num_feature()`. Each row is written in tl2cgen's `union Entry` form, a NaN as the int
   -1 (its mark of a missing value: NaN itself would compare false and take the wrong
   branch), and scored with the model's transformation applied: the scores, as Python
   floats, in the rows' order.

   What this saves against the same loop in Python through numpy and ctypes is their set-up
   per call and per row: 5 µs for one row, the batch an idle bidder scores, against about
   0.3 here. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

union Entry {
    int missing;
    float fvalue;
    int qvalue;
};

typedef void (*Predict)(union Entry *row, int pred_margin, float *result);

/* Wider rows than any feature spec has, refused rather than allocated. */
#define MAX_WIDTH 65536

static int is_float32(const Py_buffer *view) {
    const char *format = view->format == NULL ? "B" : view->format;
    if (*format == '<' || *format == '=' || *format == '@') {
        format++;
    }
    return view->itemsize == 4 && strcmp(format, "f") == 0;
}

static PyObject *predict_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "predict_rows(address, width, rows)");
        return NULL;
    }
    Predict predict = (Predict)PyLong_AsVoidPtr(args[0]);
    if (predict == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "no function at address 0");
        }
        return NULL;
    }
    Py_ssize_t width = PyLong_AsSsize_t(args[1]);
    if (width == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (width <= 0 || width > MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "a row's width must be 1 to %d, not %zd", MAX_WIDTH, width);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return NULL;
    }
    PyObject *scores = NULL;
    union Entry *row = NULL;
    if (view.ndim != 2 || view.shape[1] != width || !is_float32(&view)) {
        PyErr_Format(PyExc_ValueError, "rows must be float32, in %zd columns", width);
        goto done;
    }
    Py_ssize_t count = view.shape[0];
    if ((row = PyMem_Malloc((size_t)width * sizeof(union Entry))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((scores = PyList_New(count)) == NULL) {
        goto done;
    }
    const float *values = view.buf;
    for (Py_ssize_t r = 0; r < count; r++, values += width) {
        for (Py_ssize_t i = 0; i < width; i++) {
            if (isnan(values[i])) {
                row[i].missing = -1;
            } else {
                row[i].fvalue = values[i];
            }
        }
        float result = 0.0f;  /* `predict` adds the trees' outputs to what it is given */
        predict(row, 0, &result);
        PyObject *score = PyFloat_FromDouble(result);
        if (score == NULL) {
            Py_CLEAR(scores);
            goto done;
        }
        PyList_SET_ITEM(scores, r, score);
    }
done:
    PyMem_Free(row);
    PyBuffer_Release(&view);
    return scores;
}

static PyMethodDef methods[] = {
    {"predict_rows", (PyCFunction)(void (*)(void))predict_rows, METH_FASTCALL,
     "predict_rows(address, width, rows) -> list[float]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_rowwise",
    .m_doc = "The embedded model's compiled trees, called row by row from C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rowwise(void) { return PyModule_Create(&module); }
