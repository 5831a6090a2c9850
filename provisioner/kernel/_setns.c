/* setns(2) for kernel/namespace.py, which Python 3.11's os module does not have (3.12's does).
 *
 * Reaching a host in a network namespace is a setns into it and one back, for every host of
 * every command. Through ctypes that call cost 3-4 ms of each command's start (importing ctypes
 * and opening the C library), more than the rest of a namespace host's reach. namespace.py
 * keeps the ctypes call as the fallback where this is not built, and
 * tests/integration/test_namespace.py holds both to the same effect on a real namespace.
 *
 * setns(fd, nstype) -> None; OSError with the errno on failure. The GIL is released around the
 * call: only the calling thread moves.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>

static PyObject *py_setns(PyObject *self, PyObject *args) {
    (void)self;
    int fd, nstype, rc;
    if (!PyArg_ParseTuple(args, "ii:setns", &fd, &nstype))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = setns(fd, nstype);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setns", py_setns, METH_VARARGS, "setns(fd, nstype): move the calling thread into a namespace"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_setns", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__setns(void) { return PyModule_Create(&module); }
