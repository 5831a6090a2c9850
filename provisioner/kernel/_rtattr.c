/* The netlink decoding of kernel/netlink.py that runs once per message of a dump, compiled.
 *
 * Reading the kernel's state is four dumps: at 1000 devices some 3000 messages, a link's
 * carrying some 40 attributes of which the observer reads 5. In Python the walk over each
 * buffer and each message was most of the time a no-op plan spent reading the kernel; here it
 * is a loop over bytes. netlink.py keeps the Python models (`_messages`, `_pick`, `_link`) as
 * the fallback, and tests/unit/test_netlink_decode.py holds each pair to the same answers, on
 * real dumps and on random and cut buffers (tests/fuzz: the same, as fuzz targets).
 *
 * messages(buffer, seq) -> (list, done, interrupted, errno): the messages of one received
 * buffer that answer `seq`, as (type, payload bytes), in order; whether NLMSG_DONE was among
 * them; whether one carried NLM_F_DUMP_INTR; the errno of an NLMSG_ERROR (0: none). The walk
 * stops at the end, at DONE, at an error (a payload too short for its code, or a code that is
 * not a negative errno, is EBADMSG), or at a header whose length is under its own size
 * (EBADMSG).
 *
 * pick(buffer, offset, types) -> tuple: for each type in `types`, the payload (bytes) of the
 * first attribute of that type from `offset` on (NLA_F_NESTED and NLA_F_NET_BYTEORDER masked
 * off), or None. The walk stops at an attribute whose length is under 4 (malformed), at the end
 * of the buffer, or once every type was found; a payload that runs past the end is cut at it,
 * as a Python slice is.
 *
 * link(message) -> tuple or None: an RTM_NEWLINK payload as (index, flags, name, mtu, mac,
 * alias, kind, tun), None if it is shorter than struct ifinfomsg. name and kind are "" when
 * absent, mtu 0, mac and alias None; a string is read up to its first NUL, as UTF-8 with
 * errors replaced. tun is None unless kind is "tun" and IFLA_INFO_DATA is there; then it is
 * (type, owner, group, pi, vnet_hdr, multi_queue), each the little-endian value of the
 * attribute's first 4 bytes at most, or None when absent. Nested walks stay inside their
 * parent's payload.
 *
 * Every read is checked against the buffer's length first.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define MAX_TYPES 32 /* more than any caller asks for */
#define TYPE_MASK 0x3FFF
#define HDR_SIZE 16  /* struct nlmsghdr */
#define IFINFO_SIZE 16 /* struct ifinfomsg */
#define NLMSG_ERROR 2
#define NLMSG_DONE 3
#define NLM_F_DUMP_INTR 0x10

/* Where each wanted attribute's payload is in data[offset:end]: start[i] = -1 when absent. */
static void walk(const unsigned char *data, Py_ssize_t offset, Py_ssize_t end, const long *wanted, Py_ssize_t n,
                 Py_ssize_t *start, Py_ssize_t *stop) {
    Py_ssize_t left = n;
    for (Py_ssize_t i = 0; i < n; i++)
        start[i] = -1;
    while (left > 0 && offset >= 0 && offset <= end - 4) {
        uint16_t size, kind;
        memcpy(&size, data + offset, 2); /* host order, as the kernel writes them; unaligned-safe */
        memcpy(&kind, data + offset + 2, 2);
        if (size < 4)
            break;
        kind &= TYPE_MASK;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (wanted[i] != kind || start[i] >= 0)
                continue;
            start[i] = offset + 4;
            stop[i] = offset + size < end ? offset + size : end;
            left--;
        }
        offset += ((Py_ssize_t)size + 3) & ~(Py_ssize_t)3;
    }
}

static PyObject *bytes_or_none(const unsigned char *data, Py_ssize_t start, Py_ssize_t stop) {
    if (start < 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)data + start, stop - start);
}

/* The text up to the first NUL, as cstr() in netlink.py; `absent` when the attribute is not there. */
static PyObject *text(const unsigned char *data, Py_ssize_t start, Py_ssize_t stop, PyObject *absent) {
    if (start < 0) {
        Py_INCREF(absent);
        return absent;
    }
    const unsigned char *nul = memchr(data + start, 0, (size_t)(stop - start));
    Py_ssize_t len = nul != NULL ? nul - (data + start) : stop - start;
    return PyUnicode_DecodeUTF8((const char *)data + start, len, "replace");
}

static PyObject *little(const unsigned char *data, Py_ssize_t start, Py_ssize_t stop) {
    if (start < 0)
        Py_RETURN_NONE;
    uint32_t value = 0;
    Py_ssize_t len = stop - start < 4 ? stop - start : 4;
    for (Py_ssize_t i = len - 1; i >= 0; i--)
        value = (value << 8) | data[start + i];
    return PyLong_FromUnsignedLong(value);
}

static PyObject *pick(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    Py_ssize_t offset;
    PyObject *types;
    if (!PyArg_ParseTuple(args, "y*nO!:pick", &buf, &offset, &PyTuple_Type, &types))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    if (n > MAX_TYPES || offset < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, n > MAX_TYPES ? "too many types" : "negative offset");
        return NULL;
    }
    long wanted[MAX_TYPES] = {0};
    for (Py_ssize_t i = 0; i < n; i++) {
        wanted[i] = PyLong_AsLong(PyTuple_GET_ITEM(types, i));
        if (wanted[i] == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    Py_ssize_t start[MAX_TYPES] = {0}, stop[MAX_TYPES] = {0};
    walk(buf.buf, offset, buf.len, wanted, n, start, stop);
    PyObject *out = PyTuple_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *payload = bytes_or_none(buf.buf, start[i], stop[i]);
        if (payload == NULL)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, i, payload);
    }
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *messages(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    unsigned long long seq;
    if (!PyArg_ParseTuple(args, "y*K:messages", &buf, &seq))
        return NULL;
    const unsigned char *data = buf.buf;
    Py_ssize_t offset = 0, end = buf.len;
    int done = 0, interrupted = 0;
    long code = 0;
    PyObject *out = PyList_New(0);
    while (out != NULL && offset <= end - HDR_SIZE) {
        uint32_t length, mseq;
        uint16_t kind, flags;
        memcpy(&length, data + offset, 4);
        memcpy(&kind, data + offset + 4, 2);
        memcpy(&flags, data + offset + 6, 2);
        memcpy(&mseq, data + offset + 8, 4);
        if (length < HDR_SIZE) {
            code = EBADMSG;
            break;
        }
        Py_ssize_t start = offset + HDR_SIZE;
        Py_ssize_t stop = (Py_ssize_t)length < end - offset ? offset + (Py_ssize_t)length : end;
        offset = (Py_ssize_t)length < end - offset ? offset + (((Py_ssize_t)length + 3) & ~(Py_ssize_t)3) : end;
        if (mseq != seq)
            continue;
        if (flags & NLM_F_DUMP_INTR)
            interrupted = 1;
        if (kind == NLMSG_DONE) {
            done = 1;
            break;
        }
        if (kind == NLMSG_ERROR) {
            int32_t error;
            if (stop - start < 4) {
                code = EBADMSG;
                break;
            }
            memcpy(&error, data + start, 4);
            if (error == 0)
                continue;
            code = error < 0 && error > -4096 ? -(long)error : EBADMSG;
            break;
        }
        PyObject *item = Py_BuildValue("(iy#)", (int)kind, (const char *)data + start, stop - start);
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    PyBuffer_Release(&buf);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(NOOl)", out, done ? Py_True : Py_False, interrupted ? Py_True : Py_False, code);
}

static const long LINK_TYPES[] = {3, 4, 1, 20, 18}; /* IFLA_IFNAME, _MTU, _ADDRESS, _IFALIAS, _LINKINFO */
static const long INFO_TYPES[] = {1, 2};           /* IFLA_INFO_KIND, IFLA_INFO_DATA */
static const long TUN_TYPES[] = {3, 1, 2, 4, 5, 7}; /* IFLA_TUN_TYPE, _OWNER, _GROUP, _PI, _VNET_HDR, _MULTI_QUEUE */

static PyObject *link_fields(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = buf.buf;
    Py_ssize_t end = buf.len;
    if (end < IFINFO_SIZE) {
        PyBuffer_Release(&buf);
        Py_RETURN_NONE;
    }
    int32_t index;
    uint32_t flags, mtu = 0;
    memcpy(&index, data + 4, 4);
    memcpy(&flags, data + 8, 4);
    Py_ssize_t start[6] = {0}, stop[6] = {0};
    walk(data, IFINFO_SIZE, end, LINK_TYPES, 5, start, stop);
    if (start[1] >= 0 && stop[1] - start[1] >= 4)
        memcpy(&mtu, data + start[1], 4);
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *name = empty == NULL ? NULL : text(data, start[0], stop[0], empty);
    PyObject *mac = bytes_or_none(data, start[2], stop[2]);
    PyObject *alias = text(data, start[3], stop[3], Py_None);
    PyObject *kind = NULL, *tun = NULL;
    if (start[4] >= 0) {
        Py_ssize_t info_start = start[4], info_stop = stop[4];
        walk(data, info_start, info_stop, INFO_TYPES, 2, start, stop);
        Py_ssize_t data_start = start[1], data_stop = stop[1];
        kind = empty == NULL ? NULL : text(data, start[0], stop[0], empty);
        if (kind != NULL && data_start >= 0 && PyUnicode_CompareWithASCIIString(kind, "tun") == 0) {
            walk(data, data_start, data_stop, TUN_TYPES, 6, start, stop);
            tun = PyTuple_New(6);
            for (int i = 0; tun != NULL && i < 6; i++) {
                PyObject *value = little(data, start[i], stop[i]);
                if (value == NULL)
                    Py_CLEAR(tun);
                else
                    PyTuple_SET_ITEM(tun, i, value);
            }
        } else if (kind != NULL) {
            tun = Py_NewRef(Py_None);
        }
    } else if (empty != NULL) {
        kind = Py_NewRef(empty);
        tun = Py_NewRef(Py_None);
    }
    PyObject *out = NULL;
    if (name != NULL && mac != NULL && alias != NULL && kind != NULL && tun != NULL)
        out = Py_BuildValue("(ikNkNNNN)", (int)index, (unsigned long)flags, name, (unsigned long)mtu, mac, alias,
                            kind, tun);
    else {
        Py_XDECREF(name);
        Py_XDECREF(mac);
        Py_XDECREF(alias);
        Py_XDECREF(kind);
        Py_XDECREF(tun);
    }
    Py_XDECREF(empty);
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef methods[] = {
    {"messages", messages, METH_VARARGS, "messages(buffer, seq) -> (list of (type, payload), done, interrupted, errno)"},
    {"pick", pick, METH_VARARGS, "pick(buffer, offset, types) -> tuple of bytes or None, one per type"},
    {"link", link_fields, METH_O, "link(message) -> (index, flags, name, mtu, mac, alias, kind, tun) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rtattr", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__rtattr(void) { return PyModule_Create(&module); }
