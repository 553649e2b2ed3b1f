/* Hot loops of the request and response codecs (serving/json_codec.py, serving/tensors.py).
 *
 * Why: a 64-row, 30-feature predict spent about 250 us of the event loop's time checking JSON rows and
 * turning them into one array, 80 us formatting the answer's floats, and 40 us (gRPC) reaching the
 * float inputs of a PredictRequest one TensorProto at a time, all in Python. Each function here does
 * exactly what the Python path it shortcuts does, or declines (returns None) and lets that path run,
 * so every error message stays written in one place. tests/serving/test_json_codec.py and
 * tests/serving/test_tensors.py compare both paths value for value.
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

/* ---- PredictRequest float inputs (protobuf wire format) ------------------------------------------- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t byte = *(*p)++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* A length-delimited field's bytes: [*start, *start + *len). */
static int read_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **start, uint64_t *len) {
    if (read_varint(p, end, len) || *len > (uint64_t)(end - *p)) return -1;
    *start = *p;
    *p += *len;
    return 0;
}

static int skip_field(const uint8_t **p, const uint8_t *end, int wire) {
    uint64_t value;
    const uint8_t *start;
    switch (wire) {
    case 0: return read_varint(p, end, &value);
    case 1: if (end - *p < 8) return -1; *p += 8; return 0;
    case 2: return read_bytes(p, end, &start, &value);
    case 5: if (end - *p < 4) return -1; *p += 4; return 0;
    default: return -1;
    }
}

/* A TensorShapeProto of exactly one unnamed dimension: its size, else -1. */
static int64_t one_dim(const uint8_t *p, const uint8_t *end) {
    uint64_t tag, len, size = 0;
    const uint8_t *dim;
    if (read_varint(&p, end, &tag) || tag != ((2 << 3) | 2) || read_bytes(&p, end, &dim, &len) || p != end) return -1;
    const uint8_t *dim_end = dim + len;
    while (dim < dim_end) {
        if (read_varint(&dim, dim_end, &tag) || tag != ((1 << 3) | 0) || read_varint(&dim, dim_end, &size)) return -1;
    }
    return size > (uint64_t)INT32_MAX ? -1 : (int64_t)size;
}

/* A TensorProto that is exactly dtype DT_FLOAT, shape [n] and n packed float_val (what a client filling
 * float_val sends, as protobuf re-serializes it): n and the floats' bytes, else -1. */
static int64_t float_tensor(const uint8_t *p, const uint8_t *end, const uint8_t **floats) {
    int dtype = 0, shape = 0, values = 0;
    int64_t count = -1;
    uint64_t tag, value, len = 0;
    const uint8_t *start;
    while (p < end) {
        if (read_varint(&p, end, &tag)) return -1;
        if (tag == ((1 << 3) | 0)) {
            if (dtype++ || read_varint(&p, end, &value) || value != 1 /* DT_FLOAT */) return -1;
        } else if (tag == ((2 << 3) | 2)) {
            if (shape++ || read_bytes(&p, end, &start, &value) || (count = one_dim(start, start + value)) < 1) return -1;
        } else if (tag == ((5 << 3) | 2)) {
            if (values++ || read_bytes(&p, end, floats, &len)) return -1;
        } else {
            return -1;  /* tensor_content, another dtype's values, a version: the Python path decides */
        }
    }
    return (dtype && shape && values && len == 4 * (uint64_t)count) ? count : -1;
}

typedef struct {
    const uint8_t *key, *floats;
    uint64_t key_len;
} input_t;

static int compare_inputs(const void *a, const void *b) {
    const input_t *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);  /* UTF-8 byte order is code point order, as Python sorts str */
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* predict_float_inputs(request: bytes) -> (aliases, rows, floats: bytearray) | None
 *
 * A serialized PredictRequest whose inputs (two or more) are all one-dimensional DT_FLOAT tensors of
 * the same length n, sent as float_val: the aliases sorted, n, and the values as one float32 array with
 * input i in row i. None for anything else (tensors.stack_float_protos then decides, as before). */
static PyObject *predict_float_inputs(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    const uint8_t *p = view.buf, *end = p + view.len;
    input_t *inputs = NULL;
    size_t count = 0, capacity = 0;
    int64_t rows = -1;
    PyObject *result = NULL;
    while (p < end) {
        uint64_t tag, len;
        const uint8_t *entry;
        if (read_varint(&p, end, &tag)) goto decline;
        if (tag != ((2 << 3) | 2)) {  /* model_spec, output_filter: read by the servicer from the message */
            if (skip_field(&p, end, (int)(tag & 7))) goto decline;
            continue;
        }
        if (read_bytes(&p, end, &entry, &len)) goto decline;
        const uint8_t *entry_end = entry + len, *key = NULL, *tensor = NULL;
        uint64_t key_len = 0, tensor_len = 0;
        while (entry < entry_end) {
            if (read_varint(&entry, entry_end, &tag)) goto decline;
            if (tag == ((1 << 3) | 2) && !key) {
                if (read_bytes(&entry, entry_end, &key, &key_len)) goto decline;
            } else if (tag == ((2 << 3) | 2) && !tensor) {
                if (read_bytes(&entry, entry_end, &tensor, &tensor_len)) goto decline;
            } else {
                goto decline;
            }
        }
        if (!key || !tensor) goto decline;
        const uint8_t *floats = NULL;
        int64_t n = float_tensor(tensor, tensor + tensor_len, &floats);
        if (n < 1 || (rows >= 0 && n != rows)) goto decline;
        rows = n;
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 64;
            input_t *grown = realloc(inputs, capacity * sizeof *grown);
            if (!grown) { PyErr_NoMemory(); goto done; }
            inputs = grown;
        }
        inputs[count++] = (input_t){key, floats, key_len};
    }
    if (count < 2) goto decline;
    qsort(inputs, count, sizeof *inputs, compare_inputs);
    for (size_t i = 1; i < count; i++)
        if (!compare_inputs(&inputs[i - 1], &inputs[i])) goto decline;  /* a repeated key: the last one wins in protobuf */
    PyObject *aliases = PyTuple_New((Py_ssize_t)count);
    PyObject *data = aliases ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(count * (size_t)rows * 4)) : NULL;
    if (!data) { Py_XDECREF(aliases); goto done; }
    char *out = PyByteArray_AS_STRING(data);
    for (size_t i = 0; i < count; i++) {
        PyObject *alias = PyUnicode_DecodeUTF8((const char *)inputs[i].key, (Py_ssize_t)inputs[i].key_len, NULL);
        if (!alias) {
            Py_DECREF(aliases);
            Py_DECREF(data);
            PyErr_Clear();  /* not UTF-8: protobuf's parse of the message reports it */
            goto decline;
        }
        PyTuple_SET_ITEM(aliases, (Py_ssize_t)i, alias);
        memcpy(out + i * (size_t)rows * 4, inputs[i].floats, (size_t)rows * 4);
    }
    result = Py_BuildValue("(NLN)", aliases, (long long)rows, data);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    free(inputs);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"predict_float_inputs", (PyCFunction)predict_float_inputs, METH_O,
     "A serialized PredictRequest's same-length float_val inputs as (sorted aliases, n, float32 bytes), else None."},
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
