/* Persistent tun/tap devices made in one call, for kernel/creations.py.
 *
 * A device is what `ip tuntap add` makes: open /dev/net/tun, TUNSETIFF, TUNSETOWNER and
 * TUNSETGROUP if asked, TUNSETPERSIST, close (tuntap.create is the same in Python, and the
 * fallback where this is not built). Made from Python, each of those calls gave the GIL up and
 * took it back, and the thread that makes the devices waited for it while the thread applying
 * the plan encoded requests: 1000 taps took 165-210 ms in a converge, against 110-150 ms for
 * the same calls in a loop alone (measured). Here a whole batch is made with the GIL released
 * once, and each device's interface index is read back (SIOCGIFINDEX) for the requests that
 * name it.
 *
 * create(devices, stop) -> list of (errno, ifindex), one per device tried, in order.
 *   devices: a sequence of (name: bytes, flags: int, owner: int, group: int); owner and group
 *   are -1 for none. errno 0: made and persistent, with its ifindex (0 if it could not be read);
 *   else the kernel's errno, ifindex 0, and nothing of that device is left. With `stop` true
 *   the list ends at the first failure. A name of IFNAMSIZ bytes or more, or holding a NUL or a
 *   '%' (which the kernel reads as a template), is EINVAL without a call; a close that fails
 *   after TUNSETPERSIST leaves the device made.
 * The devices are made in the calling thread's network namespace.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct wanted {
    char name[IFNAMSIZ];
    int bad; /* the name cannot be given to the kernel */
    unsigned short flags;
    long owner, group;
    int error, index;
};

static int make_one(struct wanted *w, int probe) {
    struct ifreq ifr;
    int fd;
    if (w->bad)
        return EINVAL;
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, w->name, IFNAMSIZ);
    ifr.ifr_flags = (short)w->flags;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || (w->owner >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)w->owner) < 0) ||
        (w->group >= 0 && ioctl(fd, TUNSETGROUP, (unsigned long)w->group) < 0) ||
        ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
        int error = errno;
        close(fd); /* not persistent: the device goes with the descriptor */
        return error;
    }
    if (probe >= 0) {
        struct ifreq index;
        memset(&index, 0, sizeof index);
        memcpy(index.ifr_name, ifr.ifr_name, IFNAMSIZ); /* the name the kernel gave it */
        if (ioctl(probe, SIOCGIFINDEX, &index) == 0)
            w->index = index.ifr_ifindex;
    }
    close(fd); /* made whatever it says: the device is persistent */
    return 0;
}

static int read_wanted(PyObject *item, struct wanted *w) {
    const char *name;
    Py_ssize_t size;
    int flags;
    long owner, group;
    if (!PyTuple_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "each device is a tuple (name, flags, owner, group)");
        return -1;
    }
    if (!PyArg_ParseTuple(item, "y#ill:device", &name, &size, &flags, &owner, &group))
        return -1;
    if (flags < 0 || flags > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "flags out of range");
        return -1;
    }
    memset(w, 0, sizeof *w);
    /* '%' would make the name a template (x%d becomes x0): a device no one could find again */
    w->bad = size <= 0 || size >= IFNAMSIZ || memchr(name, 0, (size_t)size) != NULL ||
             memchr(name, '%', (size_t)size) != NULL;
    if (!w->bad)
        memcpy(w->name, name, (size_t)size);
    w->flags = (unsigned short)flags;
    w->owner = owner;
    w->group = group;
    return 0;
}

static PyObject *py_create(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *devices, *seq, *out = NULL;
    int stop;
    Py_ssize_t n, tried = 0, i;
    struct wanted *all;
    if (!PyArg_ParseTuple(args, "Op:create", &devices, &stop))
        return NULL;
    seq = PySequence_Fast(devices, "devices must be a sequence");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    all = PyMem_Calloc(n ? (size_t)n : 1, sizeof *all);
    if (all == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++)
        if (read_wanted(PySequence_Fast_GET_ITEM(seq, i), &all[i]) < 0)
            goto done;
    Py_BEGIN_ALLOW_THREADS
    int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* any socket answers SIOCGIFINDEX */
    for (tried = 0; tried < n; tried++) {
        all[tried].error = make_one(&all[tried], probe);
        if (all[tried].error && stop) {
            tried++;
            break;
        }
    }
    if (probe >= 0)
        close(probe);
    Py_END_ALLOW_THREADS
    out = PyList_New(tried);
    if (out == NULL)
        goto done;
    for (i = 0; i < tried; i++) {
        PyObject *pair = Py_BuildValue("(ii)", all[i].error, all[i].index);
        if (pair == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, pair);
    }
done:
    PyMem_Free(all);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"create", py_create, METH_VARARGS,
     "create(devices, stop) -> [(errno, ifindex)]: persistent tun/tap devices, made with the GIL released"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tuntap", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tuntap(void) { return PyModule_Create(&module); }
