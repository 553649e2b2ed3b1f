/* Hot loops of the REST JSON codec (serving/json_codec.py), for its two per-value passes.
 *
 * Why: a 64-row, 30-feature predict spent about 250 us of the event loop's time checking rows and
 * turning them into one array, and 80 us formatting the answer's floats, in Python. Each function
 * here does exactly what the Python path it shortcuts does, or declines (returns None) and lets that
 * path run, so every error message stays written in one place. tests/serving/test_json_codec.py
 * compares both paths value for value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXACT_LIMIT 9007199254740992.0 /* 2**53: beyond it a JSON integer may not be a double exactly */

/* float_rows(instances: list, aliases: tuple[str, ...]) -> bytes | None
 *
 * Rows (dicts whose keys are exactly `aliases`) of plain numbers as one float64 array in column order:
 * value j of row i at [j * rows + i]. None for anything else: a non-dict row, a missing or extra key, a
 * bool, a string, a list, a non-finite number or one beyond 2**53. */
static PyObject *float_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "float_rows(instances: list, aliases: tuple)");
        return NULL;
    }
    PyObject *rows = args[0], *aliases = args[1];
    Py_ssize_t n = PyList_GET_SIZE(rows), k = PyTuple_GET_SIZE(aliases);
    if (n == 0 || k == 0 || n > PY_SSIZE_T_MAX / 8 / k) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * k * (Py_ssize_t)sizeof(double));
    if (!out) return NULL;
    double *values = (double *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyDict_CheckExact(row) || PyDict_GET_SIZE(row) != k) goto decline;
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *value = PyDict_GetItemWithError(row, PyTuple_GET_ITEM(aliases, j));
            double d;
            if (!value) {
                if (PyErr_Occurred()) { Py_DECREF(out); return NULL; }
                goto decline;
            }
            if (PyFloat_CheckExact(value)) {
                d = PyFloat_AS_DOUBLE(value);
                if (!isfinite(d) || fabs(d) >= EXACT_LIMIT) goto decline;
            } else if (PyLong_CheckExact(value)) {  /* bool is its own type: never taken for 0 or 1 */
                int overflow = 0;
                long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
                if (overflow || (v == -1 && PyErr_Occurred())) { PyErr_Clear(); goto decline; }
                d = (double)v;
                if (fabs(d) >= EXACT_LIMIT) goto decline;
            } else {
                goto decline;
            }
            values[j * n + i] = d;
        }
    }
    return out;
decline:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

static locale_t c_locale;

/* One value as json_codec.format_float writes it: %.6g, widened to %.9g (single) or %.17g (double)
 * when the short form does not read back as the same value; ".0" added to an integral form. */
static int format_one(double value, int single, char *text, size_t size) {
    if (isnan(value)) return snprintf(text, size, "NaN");
    if (isinf(value)) return snprintf(text, size, value > 0 ? "Infinity" : "-Infinity");
    int len = snprintf(text, size, "%.6g", value);
    double back = strtod(text, NULL);
    if (single ? (float)back != (float)value : back != value)
        len = snprintf(text, size, single ? "%.9g" : "%.17g", value);
    if (!strpbrk(text, ".e")) {
        text[len++] = '.';
        text[len++] = '0';
        text[len] = 0;
    }
    return len;
}

/* format_floats(values: buffer of float32 or float64, single: bool) -> list[str] */
static PyObject *format_floats(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "format_floats(values, single)");
        return NULL;
    }
    int single = PyObject_IsTrue(args[1]);
    if (single < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)) return NULL;
    const char *format = view.format ? view.format : "B";
    int is_f32 = view.itemsize == 4 && (!strcmp(format, "f") || !strcmp(format, "<f") || !strcmp(format, "="));
    int is_f64 = view.itemsize == 8 && (!strcmp(format, "d") || !strcmp(format, "<d") || !strcmp(format, "="));
    if (!is_f32 && !is_f64) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "format_floats takes a contiguous float32 or float64 buffer");
        return NULL;
    }
    Py_ssize_t count = view.len / view.itemsize;
    PyObject *out = PyList_New(count);
    locale_t previous = uselocale(c_locale);  /* '.' as the decimal point whatever the process locale */
    char text[64];
    for (Py_ssize_t i = 0; out && i < count; i++) {
        double value = is_f32 ? (double)((const float *)view.buf)[i] : ((const double *)view.buf)[i];
        int len = format_one(value, single, text, sizeof text - 3);
        PyObject *s = PyUnicode_FromStringAndSize(text, len);
        if (!s) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, s);
    }
    uselocale(previous);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"float_rows", (PyCFunction)(void (*)(void))float_rows, METH_FASTCALL,
     "Rows of plain numbers keyed exactly by the aliases as column-ordered float64 bytes, else None."},
    {"format_floats", (PyCFunction)(void (*)(void))format_floats, METH_FASTCALL,
     "Each float32/float64 value as TF Serving's JSON writes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_codec", "Hot loops of the REST JSON codec.", -1, methods,
};

PyMODINIT_FUNC PyInit__native_codec(void) {
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!c_locale) {
        PyErr_SetString(PyExc_OSError, "cannot create the C numeric locale");
        return NULL;
    }
    return PyModule_Create(&module);
}
